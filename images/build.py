#!/usr/bin/env python
"""Build, and optionally push, the lead-core images through the Docker SDK.

    python images/build.py                      # build all three images (below)
    python images/build.py --variant cpu --bootstrap-base   # no registry reachable: a local base
    python images/build.py --variant cpu --push --registry registry.example.com/ml
    python images/build.py --print-refs         # the references, without an engine
    python images/build.py --write-constraints  # re-pin images/constraints.txt from this environment

Images: cpu -> <registry>/lead-core:<version>-<code hash>, cuda -> ...-cuda (the stages; the
references come from images/reference.py, as the components' do, so the pipeline always names the
image built here), mlflow -> <registry>/lead-mlflow-server:<mlflow version> (deploy/'s server).
The build context is made here (the package, pyproject.toml, README.md and images/), never the
whole work tree with its data and venvs. Pushing uses the credentials of `docker login`.

The host's pip settings (`pip config list`: index URLs, local index and wheel folders, CA bundle,
constraints) reach the build without entering any layer: they are served over HTTP on the docker
bridge while the build runs, and images/pip_in_build.py fetches them into a temporary folder inside
each pip RUN and deletes them in the same RUN (the build argument PIP_SETTINGS_URL, the only trace in
`docker history`, names just that short-lived address). `--no-host-pip` builds with plain pip.
Every image is built under a temporary tag and tagged only once it built and checked out, so a
failed or interrupted build tags nothing.

Needs the `docker` package (pip install docker) and a reachable engine (Docker, or Podman's
Docker-compatible socket via DOCKER_HOST); the host-pip server needs the engine on this machine.
"""

from __future__ import annotations

import argparse
import http.server
import io
import ipaddress
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from images.reference import code_hash, image_ref, registry, version

REPO = Path(__file__).resolve().parents[1]  # the checkout whose code the images hold (pip install -e .)

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
# mlflow[auth]'s extra packages for the MLflow server image (deploy/ runs --app-name basic-auth): not
# in lead-core's closure, so pinned by hand (latest on PyPI when written).
MLFLOW_SERVER_PINS = {"flask-wtf": "1.3.0", "wtforms": "3.3.2"}
# The Debian bookworm Python base made by --bootstrap-base (a local name: never pushed).
BOOTSTRAP_BASE = "lead-python-base:3.11-bookworm"
BOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
# Free space the engine's storage needs for a build (the CPU image is ~2.3 GB, plus pip's unpacking).
MIN_FREE_GIB = 6.0
# A fixed port keeps PIP_SETTINGS_URL, a build argument and so part of the layer cache key, stable.
PIP_SETTINGS_PORT = 38471
TEMP_REPOSITORY = "lead-build-tmp"


class BuildError(RuntimeError):
    """A build or push failed; the message says which image and why."""


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
        reason = " ".join(str(err).split())[:200]
        raise SystemExit(
            f"no container engine is reachable ({reason}); start one: `dockerd &` as root "
            "(`apt-get install -y docker.io` first if missing; .ci/run does both), or point "
            "DOCKER_HOST at a running engine, then rerun"
        ) from None
    return client


def check_free_space(client, need_gib: float = MIN_FREE_GIB) -> None:
    """SystemExit when the engine's storage (if on this machine) has less than `need_gib` free."""
    root = Path(client.info().get("DockerRootDir") or "/var/lib/docker")
    if not root.exists():  # a remote engine: its disk is not ours to measure
        return
    free = shutil.disk_usage(root).free / 2**30
    if free < need_gib:
        raise SystemExit(
            f"only {free:.1f} GiB free under {root}, a build needs {need_gib:.0f} GiB; free space "
            "(`docker system prune -f` drops stopped containers, dangling images and build cache) and rerun"
        )


def _one_line_build_error(ref: str, message: str) -> str:
    message = " ".join(message.split())
    if "no space left on device" in message.lower():
        return (
            f"building {ref} failed: no space left on device; free space (`docker system prune -f`) and rerun"
        )
    if re.search(r"registry|pull access denied|no such host|dial tcp|manifest unknown", message):
        return (
            f"building {ref} failed: the base image could not be pulled ({message[:200]}); where no "
            "registry is reachable, rerun with --bootstrap-base (a local Debian base)"
        )
    return f"building {ref} failed: {message}"


def build_image(
    client,
    variant: str,
    ref: str,
    buildargs: dict[str, str],
    *,
    labels: dict[str, str] | None = None,
    no_cache: bool = False,
    pull: bool = False,
) -> None:
    """Build `variant` as `ref`: under a temporary tag first, re-tagged only after the build and the
    version label check succeeded, so nothing half-built ever carries `ref`."""
    expected = buildargs["MLFLOW_VERSION" if variant == "mlflow" else "LEAD_VERSION"]
    temp = f"{TEMP_REPOSITORY}:{variant}-{uuid.uuid4().hex[:12]}"
    print(f"building {ref} from {DOCKERFILES[variant]} (as {temp} until it succeeds)", flush=True)
    try:
        stream = client.api.build(
            fileobj=build_context(),
            custom_context=True,
            encoding="gzip",
            dockerfile=DOCKERFILES[variant],
            tag=temp,
            buildargs=buildargs,
            labels=labels or {},
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
                raise BuildError(_one_line_build_error(ref, chunk["error"]))
        found = (client.images.get(temp).labels or {}).get("org.opencontainers.image.version")
        if found != expected:
            raise BuildError(
                f"{ref}: label org.opencontainers.image.version is {found!r}, expected {expected!r}"
            )
        repository, tag = ref.rsplit(":", 1)
        client.api.tag(temp, repository, tag, force=True)
    finally:
        _untag(client, temp)


def _untag(client, ref: str) -> None:
    import docker

    try:
        client.api.remove_image(ref, noprune=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as err:  # e.g. the temporary tag's image is used by a container
        print(f"warning: could not remove the temporary tag {ref}: {err}", file=sys.stderr)


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


def image_refs(registry_: str, variants: list[str]) -> dict[str, str]:
    """variant -> image reference; lead-core's from images/reference.py (as the components')."""
    refs = {}
    for variant in variants:
        if variant == "mlflow":
            refs[variant] = f"{registry_.rstrip('/')}/{MLFLOW_SERVER_IMAGE}:{pinned_version('mlflow')}"
        else:
            refs[variant] = image_ref(variant, registry_)
    return refs


# ------------------------------------------------------------------ the host's pip settings, served

# pip options whose values are local index folders / wheel folders / files (others pass unchanged).
INDEX_KEYS = ("index-url", "extra-index-url")
LINK_KEYS = ("find-links",)
FILE_KEYS = ("cert", "client-cert", "constraint")


def host_pip_config() -> dict[str, str]:
    """The host's effective pip settings, `pip config list` read the way pip reads them:
    configuration files' [global] and [install] values, then PIP_* environment variables on top."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    by_section: dict[str, dict[str, str]] = {"global": {}, "install": {}, ":env:": {}}
    for line in listing.splitlines():
        match = re.fullmatch(r"([^.=]*)\.([^=]+)='(.*)'", line.strip())
        if match and match.group(1) in by_section:
            by_section[match.group(1)][match.group(2)] = match.group(3)
    return {**by_section["global"], **by_section["install"], **by_section[":env:"]}


def _local_path(value: str) -> Path | None:
    """The folder or file a pip location names on this machine, or None for a remote URL."""
    if value.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(value).path))
    if "://" not in value and Path(value).exists():
        return Path(value)
    return None


class PipSettings:
    """The host's pip settings rewritten for a build container: local folders become URLs of this
    server, files (CA bundle, constraints) are served for download into the container's temporary
    folder (images/pip_in_build.py: `@SETTINGS_DIR@`).

    roots: URL prefix -> served folder; files: name -> served file; pip_conf: the rewritten [global].
    """

    def __init__(self, config: dict[str, str], base_url: str):
        self.roots: dict[str, Path] = {}
        self.files: dict[str, Path] = {}
        lines = []
        for key, value in sorted(config.items()):
            tokens = value.split()
            if key in INDEX_KEYS or key in LINK_KEYS:
                tokens = [self._serve(token, base_url, index=key in INDEX_KEYS) for token in tokens]
            elif key in FILE_KEYS:
                tokens = [self._file(key, token) for token in tokens]
            lines.append(f"{key} = {' '.join(tokens)}")
        host = urllib.parse.urlsplit(base_url).netloc
        trusted = [line for line in lines if line.startswith("trusted-host = ")]
        if trusted:
            lines[lines.index(trusted[0])] = f"{trusted[0]} {host}"
        else:
            lines.append(f"trusted-host = {host}")  # plain HTTP: pip ignores it unless trusted
        self.pip_conf = "[global]\n" + "\n".join(lines) + "\n"

    def _serve(self, token: str, base_url: str, *, index: bool) -> str:
        path = _local_path(token)
        if path is None:
            return token
        # An index folder's pages link to files beside it (../../files/x.whl): serve its parent.
        root = path.parent if index or path.is_file() else path
        prefix = f"d{len(self.roots)}"
        self.roots[prefix] = root
        rest = path.name + ("/" if path.is_dir() else "") if root != path else ""
        return f"{base_url}/{prefix}/{rest}"

    def _file(self, key: str, token: str) -> str:
        path = _local_path(token)
        if path is None or not path.is_file():
            return token
        name = f"{key}-{len(self.files)}-{path.name}"
        self.files[name] = path
        return f"@SETTINGS_DIR@/{name}"

    def manifest(self) -> bytes:
        return json.dumps({"pip_conf": self.pip_conf, "files": sorted(self.files)}).encode()

    def resolve(self, url_path: str) -> Path | None:
        """The host file or folder a request path names, or None (nothing outside the roots)."""
        path = posixpath.normpath(urllib.parse.unquote(url_path.split("?", 1)[0]))
        parts = path.strip("/").split("/", 1)
        if parts[0] == "files" and len(parts) == 2:
            return self.files.get(parts[1])
        root = self.roots.get(parts[0])
        if root is None or ".." in path.split("/"):
            return None
        return root / parts[1] if len(parts) == 2 else root

    def wheels(self) -> list[Path]:
        return [p for root in self.roots.values() if root.is_dir() for p in root.glob("*.whl")]


def _handler(settings: PipSettings) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] == "/manifest.json":
                body = settings.manifest()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def translate_path(self, path: str) -> str:
            resolved = settings.resolve(path)
            return str(resolved) if resolved is not None else "/nonexistent/lead-pip-settings"

        def log_message(self, format, *args):  # noqa: A002 (http.server's name)
            pass

    return Handler


@contextmanager
def serve_pip_settings(settings: PipSettings, address: str, port: int) -> Iterator[str]:
    """Serve `settings` at http://address:port while the block runs; yields that URL."""
    try:
        server = http.server.ThreadingHTTPServer((address, port), _handler(settings))
    except OSError as err:
        raise SystemExit(
            f"cannot serve the host's pip settings on {address}:{port} ({err.strerror}); stop what "
            "holds the port or pass --pip-settings-port N, then rerun"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bridge_gateway(client) -> str:
    """This machine's address on the engine's default bridge (the gateway of its subnet; older
    engines leave the Gateway field out: then the subnet's first address, as docker assigns it)."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@contextmanager
def serve_host_pip(client, port: int = PIP_SETTINGS_PORT) -> Iterator[tuple[str, PipSettings]]:
    """Serve the host's pip settings on the docker bridge's gateway address (where build
    containers reach this machine) while the block runs; yields (URL for PIP_SETTINGS_URL, settings)."""
    gateway = bridge_gateway(client)
    settings = PipSettings(host_pip_config(), f"http://{gateway}:{port}")
    with serve_pip_settings(settings, gateway, port) as url:
        print(f"serving the host's pip settings to the build at {url} (kept in no layer)", flush=True)
        yield url, settings


# ----------------------------------------------------------------------------- a base, bootstrapped


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the first bookworm entry of its sources)."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "").split()
            if uris and "bookworm" in suites:
                return uris[0]
    for path in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and "bookworm" in words[2:3]:
                    return next(w for w in words[1:] if "://" in w)
    raise SystemExit("no bookworm entry in /etc/apt/sources*: pass --debian-mirror URL")


def bootstrap_base(client, ref: str = BOOTSTRAP_BASE, mirror: str | None = None) -> str:
    """A Debian bookworm image with Python 3.11 as a venv in /usr/local (so `python` and `pip` are
    on PATH as in the official image), made with debootstrap: for machines that reach no registry.
    Kept once made (delete it with `docker rmi` to remake it)."""
    import docker

    try:
        client.images.get(ref)
        print(f"base {ref} exists; using it")
        return ref
    except docker.errors.ImageNotFound:
        pass
    if os.geteuid() != 0:
        raise SystemExit("--bootstrap-base runs debootstrap, which needs root: rerun as root (sudo)")
    if not shutil.which("debootstrap"):
        raise SystemExit("--bootstrap-base needs debootstrap: apt-get install -y debootstrap, then rerun")
    mirror = mirror or debian_mirror()
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="lead-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        print(f"bootstrapping {ref}: debootstrap bookworm from {mirror}", flush=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BOOTSTRAP_PACKAGES)}", "bookworm",
             str(rootfs), mirror],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/usr/local"], check=True)
        for junk in ("var/lib/apt/lists", "var/cache/apt", "var/log"):
            for path in (rootfs / junk).glob("*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        repository, tag = ref.rsplit(":", 1)
        client.api.import_image_from_file(
            str(archive),
            repository=repository,
            tag=tag,
            changes=[
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["python3"]',
            ],
        )
    client.images.get(ref)  # raises if the import tagged nothing
    print(f"bootstrapped {ref} in {time.time() - start:.0f} s")
    return ref


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
        "# The last two blocks are pinned by hand: CUDA_ONLY_PINS and MLFLOW_SERVER_PINS in images/build.py.",
    ]
    lines = [f"{name}=={version}" for name, version in pins.items()]
    cuda = ["# CUDA image only"] + [f"{name}=={version}" for name, version in CUDA_ONLY_PINS.items()]
    server = ["# MLflow server image only"] + [
        f"{name}=={version}" for name, version in MLFLOW_SERVER_PINS.items()
    ]
    path.write_text("\n".join(header + lines + cuda + server + [""]))
    print(f"wrote {len(lines) + len(CUDA_ONLY_PINS) + len(MLFLOW_SERVER_PINS)} pins to {path}")


def torch_from_host(settings: PipSettings) -> bool:
    """Whether the host's wheel folders hold the pinned CPU torch wheel (no index needed for it)."""
    wanted = f"torch-{pinned_version('torch')}+cpu-"
    return any(p.name.startswith(wanted) for p in settings.wheels())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", default=registry(), help="image registry (default: %(default)s)")
    parser.add_argument(
        "--variant", choices=list(DOCKERFILES), action="append", help="build only this image (repeatable)"
    )
    parser.add_argument("--push", action="store_true", help="push after building")
    parser.add_argument("--no-cache", action="store_true", help="build without the layer cache")
    parser.add_argument("--pull", action="store_true", help="pull newer base images first")
    parser.add_argument("--base-image", help="BASE_IMAGE of the Dockerfiles (default: theirs, pinned)")
    parser.add_argument(
        "--bootstrap-base",
        action="store_true",
        help=f"make {BOOTSTRAP_BASE} with debootstrap (no registry needed) and build on it",
    )
    parser.add_argument("--debian-mirror", help="--bootstrap-base: mirror (default: apt's)")
    parser.add_argument(
        "--torch-index-url",
        help="TORCH_INDEX_URL ('' = the host's pip sources; default: '' for cpu when the host's wheel "
        "folders hold the pinned +cpu torch wheel, else the Dockerfile's)",
    )
    parser.add_argument("--no-host-pip", action="store_true", help="do not pass the host's pip settings")
    parser.add_argument("--pip-settings-port", type=int, default=PIP_SETTINGS_PORT, help="%(default)s")
    parser.add_argument("--print-refs", action="store_true", help="print the image references and exit")
    parser.add_argument(
        "--write-constraints", action="store_true", help="re-pin images/constraints.txt and exit"
    )
    args = parser.parse_args(argv)

    if args.write_constraints:
        write_constraints()
        return 0
    refs = image_refs(args.registry, args.variant or list(DOCKERFILES))
    if args.print_refs:
        print("\n".join(f"{variant} {ref}" for variant, ref in refs.items()))
        return 0
    client = docker_client()
    check_free_space(client)
    base = bootstrap_base(client, mirror=args.debian_mirror) if args.bootstrap_base else args.base_image
    try:
        serving = serve_host_pip(client, args.pip_settings_port) if not args.no_host_pip else _nothing()
        with serving as (pip_url, pip):
            for variant, ref in refs.items():
                buildargs = {"MLFLOW_VERSION": pinned_version("mlflow")} if variant == "mlflow" else {
                    "LEAD_VERSION": version()}  # fmt: skip
                if base:
                    buildargs["BASE_IMAGE"] = base
                if pip_url:
                    buildargs["PIP_SETTINGS_URL"] = pip_url
                if args.torch_index_url is not None:
                    buildargs["TORCH_INDEX_URL"] = args.torch_index_url
                elif variant == "cpu" and pip is not None and torch_from_host(pip):
                    buildargs["TORCH_INDEX_URL"] = ""
                labels = {} if variant == "mlflow" else {"org.lead.code-hash": code_hash()}
                start = time.time()
                build_image(
                    client, variant, ref, buildargs, labels=labels, no_cache=args.no_cache, pull=args.pull
                )
                size = client.images.get(ref).attrs["Size"] / 1e9
                print(f"built {ref} in {time.time() - start:.0f} s ({size:.2f} GB)", flush=True)
        if args.push:
            for ref in refs.values():
                push_image(client, ref)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(f"{'pushed' if args.push else 'built'} {ref}" for ref in refs.values()))
    return 0


@contextmanager
def _nothing() -> Iterator[tuple[None, None]]:
    yield None, None


if __name__ == "__main__":
    sys.exit(main())
