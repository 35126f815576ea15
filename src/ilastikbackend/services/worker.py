"""The block worker: fetch a block plus halo from the data provider, predict, store the result."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import numpy as np
import requests

from ilastikbackend.broker import BlockCache
from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.log import log_event, worker_name
from ilastikbackend.roi import Roi
from ilastikbackend.scratch import scratch_dir
from ilastikbackend.services.blocks import FEATURES, PROBABILITIES, encode_block
from ilastikbackend.services.encoding import decode_raw
from ilastikbackend.services.web import thread_session


class ClassifierRegistry:
    """Classifiers by project hash: projects given locally, or downloaded from the
    pixel classification service (``task["project_url"]``) and checked against the hash."""

    def __init__(self, project_paths: list[str] | None = None, download_dir: str | None = None,
                 download_token: str | None = None):  # fmt: skip
        self._projects = {}
        for path in project_paths or []:
            project = load_project(path)
            self._projects[project.content_hash] = project
        self._classifiers: dict[tuple, PixelClassifier] = {}
        self._lock = threading.Lock()
        self._download_dir = download_dir
        self._download_token = download_token

    @staticmethod
    def _key(project, engine: str, dataset_shape) -> tuple:
        # 3D classifiers depend on the volume's depth (thin volumes are filtered per slice).
        z = None if project.spatial_ndim == 2 else int(dataset_shape[0])
        return (project.content_hash, engine, z)

    def add(self, classifier: PixelClassifier, dataset_shape) -> None:
        """Serve tasks for this classifier's project without loading it again."""
        project = classifier.project
        self._projects[project.content_hash] = project
        self._classifiers[self._key(project, classifier.engine, dataset_shape)] = classifier

    def _project(self, project_hash: str, url: str):
        if project_hash in self._projects:
            return self._projects[project_hash]
        if not self._download_token:
            raise ValueError(f"project {project_hash[:12]} is not loaded here and this worker has no download token "
                             "for it: start the worker with --project or --project-download-token")  # fmt: skip
        response = requests.get(url, timeout=60, headers={"Authorization": f"Bearer {self._download_token}"})
        response.raise_for_status()
        digest = hashlib.sha256(response.content).hexdigest()
        if digest != project_hash:
            raise ValueError(f"project at {url} has hash {digest[:12]}, the task asks for {project_hash[:12]}")
        path = os.path.join(self._download_dir or scratch_dir("projects"), f"{project_hash}.ilp")
        with open(path, "wb") as fh:
            fh.write(response.content)
        project = load_project(path)
        self._projects[project_hash] = project
        log_event("project_downloaded", project=project_hash[:12], url=url)
        return project

    def get(self, task: dict) -> PixelClassifier:
        with self._lock:
            project = self._project(task["project_hash"], task["project_url"])
            key = self._key(project, task["feature_engine"], task["dataset_shape"])
            clf = self._classifiers.get(key)
            if clf is None:
                clf = PixelClassifier(project, z_size=key[2], engine=task["feature_engine"])
                self._classifiers[key] = clf
            return clf


def fetch_raw(task: dict) -> np.ndarray:
    """The block's raw region with halo, from the data provider, checked against the dataset id."""
    query = Roi(tuple(task["outer_begin"]), tuple(task["outer_end"])).query()
    # The dataset is named: the provider serves files registered besides the one it was started with.
    url = f"{task['dataprovider_url']}/raw/raw/roi?{query}&dataset={task['dataset_id']}"
    response = thread_session().get(url, timeout=120)
    if response.status_code != 200:
        raise OSError(f"data provider answered {response.status_code} for {query}: {response.text[:300]}")
    dataset_id = response.headers.get("X-Dataset-Id")
    if dataset_id != task["dataset_id"]:
        raise OSError(f"data provider serves dataset {dataset_id}, the task is for {task['dataset_id']}")
    return decode_raw(response.headers, response.content)


class BlockWorker:
    """Handles block tasks; shared by worker.py (RabbitMQ) and the embedded pool."""

    def __init__(self, cache: BlockCache, registry: ClassifierRegistry, name: str | None = None):
        self.cache = cache
        self.registry = registry
        self.name = name or worker_name()

    def handle(self, task: dict) -> None:
        key, block = task["key"], task["block_id"]
        if self.cache.get_many([key])[0] is not None:  # a redelivered task whose result already landed
            log_event("block_skipped", block=block, worker=self.name, reason="cached")
            return
        start = time.perf_counter()
        log_event("block_started", block=block, kind=task.get("kind", PROBABILITIES), worker=self.name)
        lease = float(task.get("lease_seconds", 120))
        done = threading.Event()
        renew = threading.Thread(target=self._keep_claim, args=(key, lease, done), daemon=True)
        renew.start()
        try:
            clf = self.registry.get(task)
            raw = fetch_raw(task)
            # A time series' block is one time point: its raw region carries t first (one thick).
            timed = len(task["outer_begin"]) == len(task["dataset_shape"]) + 1
            if timed:
                raw = raw[0]
            fetched = time.perf_counter()
            # Where the block sits in the image: the fastfilters engine's last bits depend on it.
            origin = task["outer_begin"][1:] if timed else task["outer_begin"]
            placement = {"origin": origin, "image_shape": task["dataset_shape"]}
            if task.get("kind", PROBABILITIES) == FEATURES:
                probs = clf.features(raw, task["inner_begin"], task["inner_end"], **placement)
            else:
                probs = clf.predict(raw, task["inner_begin"], task["inner_end"], **placement)
            if timed:
                probs = probs[np.newaxis]
            computed = time.perf_counter()
        finally:
            done.set()
            renew.join()  # no renewal may land after the result (it would leave an orphan claim)
        self.cache.put(key, encode_block(probs))
        self.cache.count_computation(key)
        log_event(
            "block_done", block=block, worker=self.name, shape="x".join(map(str, probs.shape[:-1])),
            fetch_seconds=fetched - start, compute_seconds=computed - fetched, seconds=time.perf_counter() - start,
        )  # fmt: skip

    def _keep_claim(self, key: str, lease: float, done: threading.Event) -> None:
        """Renew the block's lease while it computes, so slow blocks are not issued twice."""
        while True:
            try:
                self.cache.extend_claim(key, lease, create=True)
            except ConnectionError:
                pass  # the cache is away; the result's put will wait for it
            if done.wait(lease / 3):
                return

    def fail(self, task: dict, message: str) -> None:
        """Record a block's final failure, so requests waiting for it fail now with the reason."""
        try:
            self.cache.put_error(task["key"], f"block {task['block_id']}: {message}")
        except ConnectionError as err:  # the cache is away: waiters see the claim expire and re-issue the block
            log_event("failure_not_recorded", level=40, block=task["block_id"], error=str(err))
