#!/usr/bin/env python
"""Build, and optionally push, the lead-core images through the Docker SDK.

    python images/build.py                      # build all three images (below)
    python images/build.py --variant cpu --push --registry registry.example.com/ml
    python images/build.py --write-constraints  # re-pin images/constraints.txt from this environment

Images: cpu -> <registry>/lead-core:<lead_core version>, cuda -> <registry>/lead-core:<version>-cuda
(the stages), mlflow -> <registry>/lead-mlflow-server:<mlflow version> (deploy/'s tracking server).
The lead-core tags come from components/_image.py, the module the components take their base image
from, so the pipeline always names the image built here. The build context is made here (the package,
pyproject.toml, README.md and images/), never the whole work tree with its data and venvs.
Pushing uses the credentials of `docker login` (~/.docker/config.json).

Needs the `docker` package (pip install docker) and a reachable engine (Docker, or Podman's
Docker-compatible socket via DOCKER_HOST).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import tarfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
DOCKERFILES = {
    "cpu": "images/Dockerfile.cpu",
    "cuda": "images/Dockerfile.cuda",
    "mlflow": "images/Dockerfile.mlflow",
}
MLFLOW_SERVER_IMAGE = "lead-mlflow-server"
CONSTRAINTS = IMAGES / "constraints.txt"
# What the images install besides the faiss variant; keep in step with the Dockerfiles.
IMAGE_EXTRAS = ("faiss-cpu", "tracking", "pipeline", "report", "models")
CONTEXT = ("pyproject.toml", "README.md", "lead_core", "images")
SKIPPED_IN_CONTEXT = {"__pycache__", ".pytest_cache", ".ruff_cache"}
# The CUDA image's faiss and the CUDA 12 libraries it loads: not installed on CPU machines, so
# pinned by hand (latest on PyPI when written; faiss-gpu-cu12 itself only asks for >=).
CUDA_ONLY_PINS = {
    "faiss-gpu-cu12": "1.14.1.post1",
    "nvidia-cublas-cu12": "12.9.3.13",
    "nvidia-cuda-runtime-cu12": "12.9.79",
}


class BuildError(RuntimeError):
    """A build or push failed; the message says which image and why."""


def _load_image_module():
    """components/_image.py, loaded by path: importing the components package would need kfp."""
    sys.path.insert(0, str(REPO))  # for lead_core.__version__
    spec = importlib.util.spec_from_file_location("_lead_image", REPO / "components" / "_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_context() -> io.BytesIO:
    """A gzipped tar of the files the Dockerfiles COPY, rooted at the repository."""
    buffer = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(part in SKIPPED_IN_CONTEXT or part.endswith(".pyc") for part in parts):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in CONTEXT:
            path = REPO / name
            if not path.exists():
                raise BuildError(f"build context: {path} is missing")
            tar.add(path, arcname=name, filter=keep)
    buffer.seek(0)
    return buffer


def docker_client():
    """A Docker SDK client whose engine answered a ping, or SystemExit with what to do."""
    try:
        import docker
    except ImportError:
        raise SystemExit("images/build.py needs the Docker SDK: pip install docker") from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        raise SystemExit(
            "no container engine is reachable (DOCKER_HOST unset means unix:///var/run/docker.sock): "
            f"{err}\nStart Docker, or point DOCKER_HOST at a running engine (e.g. Podman's socket), "
            "then rerun."
        ) from None
    return client


def build_image(client, variant: str, ref: str, version: str, *, no_cache: bool, pull: bool) -> None:
    print(f"building {ref} from {DOCKERFILES[variant]}", flush=True)
    stream = client.api.build(
        fileobj=build_context(),
        custom_context=True,
        encoding="gzip",
        dockerfile=DOCKERFILES[variant],
        tag=ref,
        buildargs={"MLFLOW_VERSION": version} if variant == "mlflow" else {"LEAD_VERSION": version},
        nocache=no_cache,
        pull=pull,
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "stream" in chunk:
            print(chunk["stream"], end="", flush=True)
        if "error" in chunk:
            raise BuildError(f"building {ref} failed: {chunk['error'].strip()}")
    labels = client.images.get(ref).labels or {}
    if labels.get("org.opencontainers.image.version") != version:
        raise BuildError(
            f"{ref}: label org.opencontainers.image.version is {labels.get('org.opencontainers.image.version')!r}, expected {version!r}"
        )


def push_image(client, ref: str) -> None:
    repository, tag = ref.rsplit(":", 1)
    print(f"pushing {ref}", flush=True)
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise BuildError(f"pushing {ref} failed: {line['error'].strip()} (did `docker login` succeed?)")
        if line.get("status") and "progress" not in line:
            print(f"  {line.get('id', '')} {line['status']}", flush=True)


def pinned_version(name: str) -> str:
    """The version images/constraints.txt pins for `name`."""
    for line in CONSTRAINTS.read_text().splitlines():
        if line.partition("==")[0].strip().lower() == name.lower():
            return line.partition("==")[2].strip()
    raise BuildError(f"{CONSTRAINTS} pins no {name}")


def image_refs(image, registry: str, variants: list[str]) -> dict[str, str]:
    """variant -> image reference; lead-core's from components/_image.py."""
    refs = {}
    for variant in variants:
        if variant == "mlflow":
            refs[variant] = f"{registry.rstrip('/')}/{MLFLOW_SERVER_IMAGE}:{pinned_version('mlflow')}"
        else:
            refs[variant] = image.image_ref(variant, registry)
    return refs


def runtime_pins(extras: tuple[str, ...] = IMAGE_EXTRAS) -> dict[str, str]:
    """name -> version of every distribution the package and `extras` need, as installed in the
    running environment (the transitive closure of pyproject.toml's requirements). Local version
    labels are dropped: torch 2.13.0+cpu pins torch==2.13.0, which the CUDA build satisfies too."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    roots = list(project["dependencies"])
    for extra in extras:
        roots += project["optional-dependencies"][extra]
    queue = [Requirement(text) for text in roots]
    seen: dict[str, set[str]] = {}
    pins: dict[str, str] = {}
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        wanted = set(requirement.extras)
        if name in seen and wanted <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | wanted
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise BuildError(f"{requirement.name} (needed by the images) is not installed here") from None
        pins[name] = dist.version.split("+", 1)[0]
        for text in dist.requires or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in seen[name] | {""}
            ):
                queue.append(dependency)
    pins.pop("lead-core", None)
    return dict(sorted(pins.items()))


def write_constraints(path: Path = CONSTRAINTS) -> None:
    pins = runtime_pins()
    header = [
        "# Pinned runtime versions for the lead-core images (pip install --constraint this file).",
        f"# Generated by `python images/build.py --write-constraints` with Python {sys.version.split()[0]}",
        f"# from the environment that runs the tests; the closure of lead-core[{','.join(IMAGE_EXTRAS)}].",
        "# The last block (CUDA image only) is pinned by hand: CUDA_ONLY_PINS in images/build.py.",
    ]
    lines = [f"{name}=={version}" for name, version in pins.items()]
    cuda = ["# CUDA image only"] + [f"{name}=={version}" for name, version in CUDA_ONLY_PINS.items()]
    path.write_text("\n".join(header + lines + cuda + [""]))
    print(f"wrote {len(lines) + len(CUDA_ONLY_PINS)} pins to {path}")


def main(argv: list[str] | None = None) -> int:
    image = _load_image_module()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", default=image.REGISTRY, help="image registry (default: %(default)s)")
    parser.add_argument(
        "--variant", choices=list(DOCKERFILES), action="append", help="build only this image (repeatable)"
    )
    parser.add_argument("--push", action="store_true", help="push after building")
    parser.add_argument("--no-cache", action="store_true", help="build without the layer cache")
    parser.add_argument("--pull", action="store_true", help="pull newer base images first")
    parser.add_argument(
        "--write-constraints", action="store_true", help="re-pin images/constraints.txt and exit"
    )
    args = parser.parse_args(argv)

    if args.write_constraints:
        write_constraints()
        return 0
    refs = image_refs(image, args.registry, args.variant or list(DOCKERFILES))
    client = docker_client()
    try:
        for variant, ref in refs.items():
            version = pinned_version("mlflow") if variant == "mlflow" else image.__version__
            build_image(client, variant, ref, version, no_cache=args.no_cache, pull=args.pull)
        if args.push:
            for ref in refs.values():
                push_image(client, ref)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(f"{'pushed' if args.push else 'built'} {ref}" for ref in refs.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
