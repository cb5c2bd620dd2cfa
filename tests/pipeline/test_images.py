"""images/: the Dockerfiles, the tags the components use and the pins agree with lead_core's
version and pyproject.toml; the host's pip settings reach a build through a server, not a layer.
No engine is needed here (tests/pipeline/test_containers.py builds and runs images)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from images import build, pip_in_build
from images import reference as image
from lead_core import __version__

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
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


def test_component_images_are_tagged_with_the_version_and_the_code_hash(monkeypatch):
    monkeypatch.delenv(image.FINGERPRINT_ENV, raising=False)
    from components._image import BASE_IMAGE_CPU, BASE_IMAGE_CUDA

    # (the components' references were made at import: compare forms, as others may edit the tree)
    assert re.fullmatch(rf".+/lead-core:{__version__}-[0-9a-f]{{12}}", BASE_IMAGE_CPU), BASE_IMAGE_CPU
    assert BASE_IMAGE_CUDA == f"{BASE_IMAGE_CPU}-cuda"
    code = image.code_hash()
    assert re.fullmatch(r"[0-9a-f]{12}", code)
    refs = build.image_refs(image.registry(), ["cpu", "cuda", "mlflow"])
    assert refs["cpu"] == f"{image.registry()}/lead-core:{__version__}-{code}"
    assert refs["cuda"] == f"{refs['cpu']}-cuda"
    assert refs["mlflow"].endswith(f"/lead-mlflow-server:{_constraints()['mlflow']}")
    assert (
        image.image_ref("cuda", "registry.example.com/ml/")
        == f"registry.example.com/ml/lead-core:{__version__}-{code}-cuda"
    )
    with pytest.raises(ValueError, match="variant"):
        image.image_ref("rocm")
    monkeypatch.setenv(image.FINGERPRINT_ENV, "pinned-for-a-test")
    assert image.image_ref("cpu", "r").endswith(f"/lead-core:{__version__}-pinned-for-a-test")
    monkeypatch.setenv(image.FINGERPRINT_ENV, "no/slashes")
    with pytest.raises(ValueError, match="image tag"):
        image.code_hash()


@pytest.mark.parametrize("variant, faiss", [("cpu", "faiss-cpu"), ("cuda", "faiss-gpu")])
def test_stage_dockerfiles_pin_the_version_and_install_the_package_with_constraints(variant, faiss):
    text = _dockerfile(variant)
    assert text.startswith("# syntax=docker/dockerfile:1")
    assert _arg_default(text, "LEAD_VERSION") == __version__, (
        "bump ARG LEAD_VERSION with lead_core.__version__"
    )
    assert 'org.opencontainers.image.version="${LEAD_VERSION}"' in text
    install = re.search(r'pip_in_build.py install --constraint (\S+) "/tmp/lead\[([^\]]+)\]"', text)
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


def test_the_mlflow_image_can_run_deploys_basic_auth_app():
    """deploy/ runs `mlflow server --app-name basic-auth`, which stops at start without mlflow[auth]'s
    Flask-WTF: the image installs that extra, and its packages are pinned."""
    assert '"mlflow[auth]==${MLFLOW_VERSION}"' in _dockerfile("mlflow")
    assert "--app-name=basic-auth" in (REPO / "deploy" / "base" / "mlflow.yaml").read_text()
    assert {"flask-wtf", "wtforms"} <= set(_constraints())


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


@pytest.mark.parametrize("variant", ["cpu", "cuda", "mlflow"])
def test_dockerfiles_take_a_pinned_base_and_run_pip_only_through_the_settings_helper(variant):
    text = _dockerfile(variant)
    base = _arg_default(text, "BASE_IMAGE")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    assert re.search(r'^ARG PIP_SETTINGS_URL=""$', text, re.MULTILINE)
    runs = " ".join(re.findall(r"^RUN (.+?)(?<!\\)$", text.replace("\\\n", " "), re.MULTILINE | re.DOTALL))
    assert "pip_in_build.py install" in runs
    assert not re.search(r"(?<!_in_build\.py )\bpip install", runs.replace("pip_in_build.py install", "")), (
        "a bare `pip install` would run without the host's settings"
    )


def _tree_copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lead_core", "components", "images", "pipelines"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root / name)
    return root


def _refs(root: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(root / "images" / "build.py"), "--print-refs", "--variant", "cpu", "--variant", "cuda"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split(" ", 1) for line in out.splitlines())


def _compiled_images(root: Path, env: dict[str, str], out: Path) -> set[str]:
    subprocess.run(
        [sys.executable, str(root / "pipelines" / "lead_msmarco.py"), "--compile", str(out), "--profile", "smoke"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(re.findall(r"^\s+image: (\S+)$", out.read_text(), re.MULTILINE))


@pytest.mark.slow
def test_a_source_change_changes_the_image_references_and_the_compiled_pipeline(tmp_path):
    """In a copy of the tree: images/build.py and --compile name the same images; editing one
    lead_core file changes both, editing the README changes neither."""
    root = _tree_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != image.FINGERPRINT_ENV}
    env["PYTHONPATH"] = str(root)  # the copy's packages, not the installed checkout's
    before = _refs(root, env)
    compiled = _compiled_images(root, env, tmp_path / "before.yaml")
    assert compiled == {before["cpu"], before["cuda"]}

    (root / "README.md").write_text((root / "README.md").read_text() + "\nmore prose\n")
    assert _refs(root, env) == before, "the README is not in the image's code"

    source = root / "lead_core" / "evaluate" / "__init__.py"
    source.write_text(source.read_text() + "\n# a change\n")
    after = _refs(root, env)
    assert after["cpu"] != before["cpu"] and after["cuda"] != before["cuda"]
    assert after["cpu"].rsplit(":", 1)[1].startswith(f"{__version__}-")
    assert _compiled_images(root, env, tmp_path / "after.yaml") == {after["cpu"], after["cuda"]}


def test_host_pip_settings_are_rewritten_to_served_urls_and_files(tmp_path):
    (tmp_path / "idx" / "simple" / "demo").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "ca.pem").write_text("CERT")
    config = {
        "index-url": "https://user:secret@index.example/simple",
        "extra-index-url": f"file://{tmp_path}/idx/simple",
        "find-links": str(tmp_path / "wheels"),
        "cert": str(tmp_path / "ca.pem"),
        "timeout": "60",
    }
    settings = build.PipSettings(config, "http://10.0.0.1:1234")
    conf = settings.pip_conf
    assert "index-url = https://user:secret@index.example/simple" in conf  # remote: unchanged
    assert "extra-index-url = http://10.0.0.1:1234/d0/simple/" in conf  # served from the parent
    assert "find-links = http://10.0.0.1:1234/d1/" in conf
    assert "cert = @SETTINGS_DIR@/cert-0-ca.pem" in conf and "timeout = 60" in conf
    assert "trusted-host = 10.0.0.1:1234" in conf
    assert str(tmp_path) not in conf
    assert settings.resolve("/d0/simple/demo/") == tmp_path / "idx" / "simple" / "demo"
    assert settings.resolve("/files/cert-0-ca.pem") == tmp_path / "ca.pem"
    for escape in ("/d0/../../etc/passwd", "/d9/x", "/files/../ca.pem", "/etc/passwd"):
        assert settings.resolve(escape) is None, escape


def _write_wheel(path: Path) -> None:
    """A minimal valid pure-Python wheel (name-version from the file name)."""
    import zipfile

    name, version_ = path.name.split("-")[:2]
    info = f"{name}-{version_}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version_}\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


def test_pip_in_build_installs_through_served_settings_and_keeps_none(tmp_path, monkeypatch):
    """pip_in_build.py (the build side) against a served folder: pip finds the wheel through the
    served find-links, and the temporary settings folder is gone afterwards."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels / "demo_pkg-1.0-py3-none-any.whl")
    (tmp_path / "ca.pem").write_text("CERT")
    config = {"find-links": str(wheels), "no-index": "true", "cert": str(tmp_path / "ca.pem")}
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)  # the build container has none of the host's PIP_* variables
    made = []
    real_mkdtemp = pip_in_build.tempfile.mkdtemp
    monkeypatch.setattr(
        pip_in_build.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1]
    )
    with socket.socket() as probe:  # a free port, named in the settings before serving them
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = build.PipSettings(config, f"http://127.0.0.1:{port}")
    with build.serve_pip_settings(settings, "127.0.0.1", port) as url:
        monkeypatch.setenv("PIP_SETTINGS_URL", url)
        code = pip_in_build.main(["download", "--no-deps", "-d", str(tmp_path / "out"), "demo-pkg==1.0"])
    assert code == 0
    downloaded = tmp_path / "out" / "demo_pkg-1.0-py3-none-any.whl"
    assert downloaded.read_bytes() == (wheels / downloaded.name).read_bytes()
    assert made and not any(Path(folder).exists() for folder in made), "settings folder left behind"
