"""Images in a real engine: no layer keeps the host's pip settings, a failed build tags nothing, a
pipeline run in containers is tracked as a subprocess run is, and the --runner docker route stops
with a one-line cause on bad input (no image, an unwritable pipeline root, no space).

The engine tests need a container engine (and the layer test the built CPU image of this code):
without one they skip with the reason, except under LEAD_REQUIRE_CONTAINERS=1 (.ci/run's container
part), where a missing engine or image fails them. The tracking test reads the summaries of the runs
.ci/run made (LEAD_CONTAINER_SUMMARY, LEAD_SUBPROCESS_SUMMARY).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from images import build
from images.reference import image_ref
from pipelines import local_docker

REQUIRE = os.environ.get("LEAD_REQUIRE_CONTAINERS") == "1"
# ensurepip's wheels of a Debian python3-venv base (--bootstrap-base): part of the base, not the host's.
DEBIAN_WHEELS = "/usr/share/python-wheels/"


def _missing(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason} (LEAD_REQUIRE_CONTAINERS=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def client():
    docker = pytest.importorskip("docker")
    try:
        # a long read timeout: exporting the 2.25 GB image (`docker save`) sent its first bytes after
        # more than the SDK's default 60 s on the loaded 2-core CI machine
        engine = docker.from_env(timeout=600)
        engine.ping()
    except docker.errors.DockerException as err:
        _missing(f"no container engine reachable: {' '.join(str(err).split())[:200]}")
    return engine


@pytest.fixture(scope="module")
def cpu_image(client):
    import docker

    ref = os.environ.get("LEAD_TEST_IMAGE") or _run_images().get("cpu") or image_ref("cpu")
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        _missing(f"no image {ref}: python images/build.py --variant cpu --bootstrap-base")


def _run_images() -> dict[str, str]:
    """The images the container run of LEAD_CONTAINER_SUMMARY used (others may edit the tree
    after it, which changes the current code hash but not what was built and run)."""
    path = os.environ.get("LEAD_CONTAINER_SUMMARY")
    return (json.loads(Path(path).read_text()).get("images") or {}) if path and Path(path).exists() else {}


def _layer_entries(client, image):
    """(layer, tar entry, file object or None) of every entry of every layer of `image`, streamed."""
    stream = io.BufferedReader(_ChunkReader(client.api.get_image(image.id)), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.isfile() or not member.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as layer:
                for entry in layer:
                    yield member.name, entry, layer.extractfile(entry) if entry.isfile() else None


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks):
        self.chunks, self.pending = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.pending:
            self.pending = next(self.chunks, None)
            if self.pending is None:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


@pytest.mark.slow
def test_no_image_layer_keeps_the_hosts_pip_settings_ca_bundle_or_a_wheel(client, cpu_image):
    host = build.host_pip_config()
    history = "\n".join(h.get("CreatedBy", "") for h in client.api.history(cpu_image.id))
    for key in (*build.INDEX_KEYS, *build.LINK_KEYS, *build.FILE_KEYS):
        for token in host.get(key, "").split():
            assert token not in history, f"docker history names the host's {key} {token}"
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", history), "credentials in docker history"
    assert "PIP_SETTINGS_URL=" in history  # the only trace: the short-lived settings address

    settings = build.PipSettings(host, "http://unused")
    host_wheels = {path.name for path in settings.wheels()}
    ca = Path(host["cert"]).read_bytes() if host.get("cert") and Path(host["cert"]).is_file() else None
    found = []
    for layer, entry, data in _layer_entries(client, cpu_image):
        name = "/" + entry.name.lstrip("./")
        base = name.rsplit("/", 1)[-1]
        if base in ("pip.conf", "pip.ini") or "/.config/pip/" in name or "lead-pip-" in name:
            found.append(f"{layer}: {name} (pip settings)")
        elif name.endswith(".whl") and (base in host_wheels or not name.startswith(DEBIAN_WHEELS)):
            found.append(f"{layer}: {name} (a wheel)")
        elif ca is not None and data is not None and entry.size == len(ca):
            if hashlib.sha256(data.read()).digest() == hashlib.sha256(ca).digest():
                found.append(f"{layer}: {name} (the host's CA bundle)")
    assert not found, found


def _context(dockerfile: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile.test")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    "dockerfile, error",
    [
        ("FROM scratch\nRUN false\n", "building"),  # the build itself fails
        ('FROM scratch\nLABEL org.opencontainers.image.version="9.9"\n', "label"),  # built, check fails
    ],
)
def test_a_failed_build_tags_nothing(client, monkeypatch, dockerfile, error):
    import docker

    monkeypatch.setitem(build.DOCKERFILES, "cpu", "Dockerfile.test")
    monkeypatch.setattr(build, "build_context", lambda: _context(dockerfile))
    ref = "lead-test-failed-build:should-not-exist"
    before = {t for i in client.images.list(name=build.TEMP_REPOSITORY) for t in i.tags}
    with pytest.raises(build.BuildError, match=error):
        build.build_image(client, "cpu", ref, {"LEAD_VERSION": "0.1.0"})
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(ref)
    after = {t for i in client.images.list(name=build.TEMP_REPOSITORY) for t in i.tags}
    assert after <= before, f"temporary tags left: {after - before}"


def _stage_runs(summary: dict) -> dict[str, tuple[str, list[str], list[str]]]:
    """stage run name -> (status, param keys, metric keys) of the runs under the summary's parent."""
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(summary["tracking_uri"])
    parent = tracking.get_run(summary["parent_run_id"])
    runs = tracking.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=1000
    )
    by_name = {}
    for run in runs:
        assert run.info.run_name not in by_name, f"two runs named {run.info.run_name}"
        by_name[run.info.run_name] = (run.info.status, sorted(run.data.params), sorted(run.data.metrics))
    return by_name


def test_a_container_run_tracks_every_stage_as_a_subprocess_run_does():
    containers = os.environ.get("LEAD_CONTAINER_SUMMARY")
    if not containers:
        _missing("LEAD_CONTAINER_SUMMARY names no pipeline run in containers (.ci/run sets it)")
    summary = json.loads(Path(containers).read_text())
    assert summary["runner"] == "docker"
    if not shutil.which("nvidia-smi"):  # no GPU: the GPU stages ran in the CPU image
        assert summary["images"]["gpu"] == summary["images"]["cpu"], summary["images"]
    runs = _stage_runs(summary)
    assert set(runs) <= set(summary["executed"]), "one MLflow run per executed stage, named after it"
    untracked = set(summary["executed"]) - set(runs)
    # identity tasks only hash a source (no lead_core stage, no run of their own)
    assert all(name.startswith("identity-") for name in untracked), f"stages without a run: {untracked}"
    assert all(status == "FINISHED" and (params or metrics) for status, params, metrics in runs.values()), (
        runs
    )
    subprocess_summary = os.environ.get("LEAD_SUBPROCESS_SUMMARY")
    if subprocess_summary:
        reference = _stage_runs(json.loads(Path(subprocess_summary).read_text()))
        assert runs == reference, "runs, params and metrics differ from the subprocess runner's"


# ------------------------------------------------------------------ bad input, without an engine


class _FakeImages:
    def get(self, ref):
        import docker

        raise docker.errors.ImageNotFound(ref)


class _FakeClient:
    images = _FakeImages()


def test_no_image_stops_with_the_command_that_builds_it():
    pytest.importorskip("docker")
    with pytest.raises(SystemExit, match=r"no image \S+lead-core:\S+ .*python images/build.py --variant cpu"):
        local_docker.require_image(_FakeClient(), image_ref("cpu"), "cpu")


def test_an_unwritable_pipeline_root_stops_with_the_fix(tmp_path, monkeypatch):
    root = tmp_path / "pipeline_root"
    root.mkdir(mode=0o755)
    monkeypatch.setattr(Path, "chmod", lambda self, mode: (_ for _ in ()).throw(PermissionError(1, "no")))
    with pytest.raises(SystemExit, match=r"not writable by the containers' user.*chmod g\+rwxs"):
        local_docker.make_group_writable(root, os.getgid())
    monkeypatch.undo()
    local_docker.make_group_writable(root, os.getgid())
    assert root.stat().st_mode & (stat.S_IWGRP | stat.S_ISGID) == stat.S_IWGRP | stat.S_ISGID


def test_no_space_stops_with_the_fix(tmp_path):
    with pytest.raises(SystemExit, match=r"GiB free under .*free space"):
        local_docker.check_free_space(tmp_path, need_gib=1e9)

    class Engine:
        def info(self):
            return {"DockerRootDir": str(tmp_path)}

    with pytest.raises(SystemExit, match=r"docker system prune"):
        build.check_free_space(Engine(), need_gib=1e9)
    assert "no space left on device; free space" in build._one_line_build_error(
        "x", "write /var/lib/docker/tmp/x: no space left on device\n"
    )


def test_local_paths_among_the_parameters_are_mounted_and_remote_ones_are_not(tmp_path):
    dataset = tmp_path / "data"
    dataset.mkdir()
    values = {"dataset_uri": str(dataset), "teacher_model": "tiny:bert:2:32", "other": "https://x/y", "k": 5}
    assert local_docker.local_paths(values) == [dataset]
    from lead_core.tracking import local_default_uri

    assert local_docker.tracking_store_folder(local_default_uri(tmp_path)) == tmp_path
    assert local_docker.tracking_store_folder(f"file://{tmp_path}/mlruns") == tmp_path / "mlruns"
    assert local_docker.tracking_store_folder("http://localhost:5000") is None


def test_without_a_gpu_the_gpu_stages_run_in_the_cpu_image(tmp_path):
    """The TaskPlacer's image overrides (what DockerSetup passes on a machine without a GPU) reach
    every GPU task of the compiled pipeline, and only the image changes."""
    from kfp import compiler

    from components._image import BASE_IMAGE_CPU as cpu
    from components._image import BASE_IMAGE_CUDA as cuda
    from pipelines import lead_msmarco

    images = {}
    for name, overrides in (("plain", None), ("cpu-only", {cuda: cpu})):
        pipeline, _ = lead_msmarco.build_pipeline(images=overrides)
        out = tmp_path / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(out))
        images[name] = re.findall(r"^\s+image: (\S+)$", out.read_text(), re.MULTILINE)
    assert set(images["plain"]) == {cpu, cuda}
    assert set(images["cpu-only"]) == {cpu}
    assert len(images["cpu-only"]) == len(images["plain"])
