"""Local pipeline runs in the built images: kfp.local's DockerRunner set up with no hand work.

kfp.local's DockerRunner mounts only the pipeline root (at its own path) and passes only each task's
own environment. `docker_runner` adds what a LEAD stage needs to behave as under the subprocess
runner:

- the image: the lead-core images of this code (images/reference.py) must exist locally; on a
  machine without a GPU the GPU stages run in the CPU image (one log line says so);
- the user: the image's (non-root) user, with this process's group added; the pipeline root and the
  tracking store's folder are made group-writable (setgid) for it;
- the data: every local path among the pipeline parameters (the dataset, model folders) is mounted
  read-only at the same path, so parameters, URIs and cache keys are those of a subprocess run;
- tracking: the tracking environment (MLFLOW_*, LEAD_PARENT_RUN_ID) of this process, and the sqlite
  store's folder mounted read-write at the same path; containers share the host's network, so a
  tracking server at localhost is reached as from a subprocess. None of this enters a cache key
  (kfp.local keys on the task's own environment, not the runner's).
"""

from __future__ import annotations

import os
import shutil
import stat
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GPU_STAGES_NOTE = "no GPU on this machine: the GPU stages ({stages}) run in the CPU image {ref}"
# Free space a local run needs under its workdir (the cpu profile writes ~0.5 GB of artifacts).
MIN_FREE_GIB = 2.0
BUILD_HINT = "python images/build.py --variant {variant} --bootstrap-base"


def has_gpu(client) -> bool:
    """Whether containers can get an NVIDIA GPU here: a driver (nvidia-smi) and the engine's runtime."""
    runtimes = client.info().get("Runtimes") or {}
    return bool(shutil.which("nvidia-smi")) and "nvidia" in runtimes


def require_image(client, ref: str, variant: str) -> dict[str, Any]:
    """The image's config, or SystemExit naming the command that builds it."""
    import docker

    try:
        return client.images.get(ref).attrs["Config"]
    except docker.errors.ImageNotFound:
        raise SystemExit(
            f"no image {ref} (the {variant} image of this code) in the local engine; build it: "
            + BUILD_HINT.format(variant=variant)
        ) from None


def make_group_writable(folder: Path, gid: int) -> None:
    """g+rwx and setgid on `folder` (new entries keep its group), or SystemExit with the fix."""
    folder.mkdir(parents=True, exist_ok=True)
    mode = folder.stat().st_mode
    wanted = mode | stat.S_IRWXG | stat.S_ISGID
    try:
        if mode != wanted:
            folder.chmod(wanted)
    except PermissionError:
        pass
    info = folder.stat()
    if not (info.st_mode & stat.S_IWGRP and info.st_gid in (gid, 0)):
        raise SystemExit(
            f"{folder} is not writable by the containers' user (group {gid} needs write access); "
            f"fix: chgrp {gid} {folder} && chmod g+rwxs {folder}, or choose another --workdir"
        )


def check_free_space(folder: Path, need_gib: float = MIN_FREE_GIB) -> None:
    free = shutil.disk_usage(folder).free / 2**30
    if free < need_gib:
        raise SystemExit(
            f"only {free:.1f} GiB free under {folder}, a local run needs {need_gib:.0f} GiB; free space "
            "(e.g. delete old runs under pipeline_root/, `docker system prune -f`) or choose another --workdir"
        )


def local_paths(values: Mapping[str, Any]) -> list[Path]:
    """Existing absolute local paths among the pipeline parameter values (dataset, model folders)."""
    found = []
    for value in values.values():
        if isinstance(value, str) and value.startswith("/") and Path(value).exists():
            found.append(Path(value).resolve())
    return sorted(set(found))


def tracking_store_folder(uri: str | None) -> Path | None:
    """The local folder a file-based MLflow store (sqlite:///..., file:..., a path) writes to."""
    if not uri:
        return None
    if uri.startswith("sqlite:///"):  # sqlite:////abs/path.db, or sqlite:///relative/path.db
        return Path(uri[len("sqlite:///") :]).resolve().parent
    if uri.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path))
    if "://" not in uri:
        return Path(uri).resolve()
    return None


def tracking_environment() -> dict[str, str]:
    """This process's tracking variables, as the subprocess runner's tasks would inherit them."""
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_") or k.startswith("LEAD_PARENT")}


class DockerSetup:
    """kfp.local's DockerRunner for this machine, and the image overrides for the TaskPlacer.

    `refresh()` re-reads the tracking environment and re-opens the tracking store for the containers'
    user: call it once the parent MLflow run exists (it creates the store and LEAD_PARENT_RUN_ID);
    the runner's environment dict is updated in place, and kfp.local reads it for every task.
    """

    def __init__(
        self, values: Mapping[str, Any], pipeline_root: Path, gpu_components: frozenset[str] | set[str]
    ):
        from kfp import local

        from components._image import BASE_IMAGE_CPU, BASE_IMAGE_CUDA
        from images.build import docker_client

        client = docker_client()
        # the references the components were compiled with (the code hash of import time)
        cpu_ref, cuda_ref = BASE_IMAGE_CPU, BASE_IMAGE_CUDA
        config = require_image(client, cpu_ref, "cpu")
        # image reference in the components -> the image its tasks run in here
        self.images: dict[str, str] = {}
        run_args: dict[str, Any] = {}
        if has_gpu(client):
            require_image(client, cuda_ref, "cuda")
            import docker

            run_args["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        else:
            self.images[cuda_ref] = cpu_ref
            print(GPU_STAGES_NOTE.format(stages=", ".join(sorted(gpu_components)), ref=cpu_ref), flush=True)
        self.gid = os.getgid()
        pipeline_root.mkdir(parents=True, exist_ok=True)
        check_free_space(pipeline_root)
        make_group_writable(pipeline_root, self.gid)
        self.environment: dict[str, str] = {}
        self.mounts = [
            _bind(path, read_only=True)
            for path in local_paths(values)
            if not path.is_relative_to(pipeline_root)
        ]
        self.runner = local.DockerRunner(
            user=config.get("User") or "1000",
            group_add=[str(self.gid)],
            network_mode="host",
            mounts=self.mounts,
            environment=self.environment,
            **run_args,
        )
        self.refresh()

    def refresh(self) -> None:
        self.environment.clear()
        self.environment.update(tracking_environment())
        store = tracking_store_folder(self.environment.get("MLFLOW_TRACKING_URI"))
        if store is None:
            return
        make_group_writable(store, self.gid)
        for name in ("mlflow.db", "mlartifacts"):
            path = store / name
            if path.is_dir():
                make_group_writable(path, self.gid)
            elif path.exists():
                path.chmod(path.stat().st_mode | stat.S_IRGRP | stat.S_IWGRP)
        if not any(mount["Target"] == str(store) for mount in self.mounts):
            self.mounts.append(_bind(store, read_only=False))


def _bind(path: Path, read_only: bool):
    import docker

    return docker.types.Mount(target=str(path), source=str(path), type="bind", read_only=read_only)
