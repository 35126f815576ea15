#!/usr/bin/env bash
# Installs volumina (ilastik's viewer; LGPL, pure Python, not on PyPI) from ilastik's source archive into
# .volumina/venv: a virtual environment of Debian's /usr/bin/python3 that also sees Debian's python3-pyqt5 and
# python3-vigra, plus volumina's PyPI dependencies (scripts/volumina-requirements.txt, pinned; Debian's numpy is
# kept, vigra is built against it). volumina_viewer.py finds it there by itself.
#
#   scripts/install_volumina.sh [ARCHIVE]     (default ../shared/reference/volumina-5b81f0b.tar.gz)
#
# Idempotent and cached: does nothing when .volumina/venv already holds volumina from the same archive and
# the same requirements. Prints the Python to run volumina with. VOLUMINA_HOME overrides .volumina.
set -euo pipefail
cd "$(dirname "$0")/.."
archive=${1:-../shared/reference/volumina-5b81f0b.tar.gz}
home=${VOLUMINA_HOME:-$PWD/.volumina}
venv=$home/venv
requirements=scripts/volumina-requirements.txt

[ -f "$archive" ] || { echo "install_volumina: no volumina archive at $archive" >&2; exit 1; }
missing=()
for pkg in python3-pyqt5 python3-vigra python3-venv python3-pip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_volumina: installing Debian packages ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

stamp="$(sha256sum "$archive" "$requirements" | sha256sum | cut -c1-16)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$home/installed" 2>/dev/null)" = "$stamp" ] &&
   "$venv/bin/python" -c "import volumina.api" >/dev/null 2>&1; then
  echo "$venv/bin/python"
  exit 0
fi

rm -rf "$venv"
mkdir -p "$home"
/usr/bin/python3 -m venv --system-site-packages "$venv"
# Debian's numpy stays: vigra and PyQt5 are built against it.
numpy_version=$(/usr/bin/python3 -c "import numpy; print(numpy.__version__)")
echo "numpy==$numpy_version" > "$home/constraints.txt"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$home/constraints.txt" -r "$requirements"
# The archive has no git history for setuptools_scm to read a version from: name the commit.
SETUPTOOLS_SCM_PRETEND_VERSION="0.0.0+g$(basename "$archive" .tar.gz | sed 's/.*-//')" \
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$archive"
"$venv/bin/python" -c "import volumina.api, vigra, PyQt5.QtWidgets" >&2
echo "$stamp" > "$home/installed"
echo "$venv/bin/python"
