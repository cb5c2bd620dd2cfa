"""images/: the Dockerfiles, the tags the components use and the pins agree with lead_core's
version and pyproject.toml. No engine runs here, so nothing is built; cheap parsing only."""

from __future__ import annotations

import importlib.util
import re
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from lead_core import __version__

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("lead_images_build", IMAGES / "build.py")
image = build._load_image_module()
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _dockerfile(variant: str) -> str:
    return (REPO / build.DOCKERFILES[variant]).read_text()


def _arg_default(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert match, f"no `ARG {name}=...` default"
    return match.group(1)


def _constraints() -> dict[str, str]:
    """name -> pinned version of images/constraints.txt (every line an exact pin)."""
    pins = {}
    for line in (IMAGES / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and " " not in version, f"not an exact pin: {line!r}"
            pins[_canonical(name)] = version.strip()
    return pins


def _canonical(name: str) -> str:
    """PEP 503 name: ir_measures and ir-measures are one project."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _name(requirement: str) -> str:
    return _canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def test_component_images_are_tagged_with_the_lead_core_version():
    assert image.BASE_IMAGE_CPU.endswith(f"/lead-core:{__version__}")
    assert image.BASE_IMAGE_CUDA.endswith(f"/lead-core:{__version__}-cuda")
    refs = build.image_refs(image, image.REGISTRY, ["cpu", "cuda", "mlflow"])
    assert refs["cpu"] == image.BASE_IMAGE_CPU and refs["cuda"] == image.BASE_IMAGE_CUDA
    assert refs["mlflow"].endswith(f"/lead-mlflow-server:{_constraints()['mlflow']}")
    assert (
        image.image_ref("cuda", "registry.example.com/ml/")
        == f"registry.example.com/ml/lead-core:{__version__}-cuda"
    )
    with pytest.raises(ValueError, match="variant"):
        image.image_ref("rocm")


@pytest.mark.parametrize("variant, faiss", [("cpu", "faiss-cpu"), ("cuda", "faiss-gpu")])
def test_stage_dockerfiles_pin_the_version_and_install_the_package_with_constraints(variant, faiss):
    text = _dockerfile(variant)
    assert text.startswith("# syntax=docker/dockerfile:1")
    assert _arg_default(text, "LEAD_VERSION") == __version__, (
        "bump ARG LEAD_VERSION with lead_core.__version__"
    )
    assert 'org.opencontainers.image.version="${LEAD_VERSION}"' in text
    install = re.search(r'pip install --constraint (\S+) "/tmp/lead\[([^\]]+)\]"', text)
    assert install, "the package is installed with --constraint and extras"
    assert install.group(1) == "/tmp/lead/images/constraints.txt"
    extras = install.group(2).split(",")
    assert faiss in extras and "tracking" in extras
    # components are compiled with install_kfp_package=False: the executor must be in the image
    assert "pipeline" in extras
    assert set(extras) <= set(PROJECT["optional-dependencies"]), "an extra pyproject.toml does not define"
    assert {"faiss-cpu", "faiss-gpu"} - {faiss} <= set(PROJECT["optional-dependencies"])
    assert set(extras) - {faiss} == set(build.IMAGE_EXTRAS) - {"faiss-cpu"}, "build.IMAGE_EXTRAS drifted"
    for env in ("HF_HOME=", "LEAD_CACHE_DIR="):
        assert env in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    assert re.search(r"mkdir -p /gcs /minio /s3", text), "KFP's launcher needs these writable"


def test_torch_pins_agree_between_dockerfiles_and_constraints():
    torch = _constraints()["torch"]
    assert _arg_default(_dockerfile("cpu"), "TORCH_VERSION") == torch
    assert '"torch==${TORCH_VERSION}+cpu"' in _dockerfile("cpu")
    assert _arg_default(_dockerfile("cuda"), "TORCH_SPEC") == f"torch=={torch}"
    assert _arg_default(_dockerfile("mlflow"), "MLFLOW_VERSION") == _constraints()["mlflow"]


def test_constraints_pin_every_direct_requirement_of_the_images():
    pins = _constraints()
    direct = list(PROJECT["dependencies"])
    for extra in (*build.IMAGE_EXTRAS, "faiss-gpu"):
        direct += PROJECT["optional-dependencies"][extra]
    missing = sorted({_name(r) for r in direct} - set(pins))
    assert not missing, f"unpinned: {missing}; run python images/build.py --write-constraints"
    assert "lead-core" not in pins


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_else():
    with tarfile.open(fileobj=build.build_context(), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {name.split("/")[0] for name in names} == {"pyproject.toml", "README.md", "lead_core", "images"}
    assert "lead_core/__init__.py" in names and "images/constraints.txt" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for variant in build.DOCKERFILES:
        for line in re.findall(r"^COPY (.+)$", _dockerfile(variant), re.MULTILINE):
            for source in line.split()[:-1]:
                assert source in names, f"{build.DOCKERFILES[variant]} copies {source}, not in the context"


def test_build_without_the_docker_sdk_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(SystemExit, match="pip install docker"):
        build.docker_client()


def test_build_without_an_engine_fails_with_a_clear_message(monkeypatch, tmp_path):
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(SystemExit, match="no container engine is reachable"):
        build.main(["--variant", "cpu"])
