"""The compute core: ilastik projects, features, forests and blocking.

The heavy lifting is in the compiled extension ``ilastikbackend._core`` (built from
``ilastikbackend_bindings/``); this package reads ``.ilp`` files and wires them to it.
"""

from ilastikbackend._core import Blocking
from ilastikbackend.core.classifier import PixelClassifier
from ilastikbackend.core.project import Project, ProjectError, load_project

__all__ = ["Blocking", "PixelClassifier", "Project", "ProjectError", "load_project"]
