"""The identity of a dataset or backbone source: what a cached result was computed from.

A pipeline's cache key holds its parameters, and a URI names a place, not what is there: the same
`--dataset` folder edited in place must not be served results computed from its old contents. The
pipeline therefore resolves each source's identity at run time (a cheap, uncached step) and makes
it an input of the stage that reads the source, so changed data re-runs that stage and everything
after it, and unchanged data is still served from the cache.

`identify(source, kind)` returns an `Identity`: a short `digest` (what the cache key holds) and a
JSON-able `description` (for logs and artifact metadata):

  - a local file or folder (also ``file://``): every file's relative path, size, mtime and SHA-256
    of its content. The digest covers paths, sizes and content hashes, not mtimes: touching a file
    keeps the identity, an edit that restores size and mtime changes it. Names starting with "."
    (``.git``, editor and atomic-write temporaries) are left out at every level.
  - a remote file (``http(s)://``, ``s3://``, ``gs://``, anything fsspec reads): what its backend
    reports – ETag, Last-Modified, length, object version / generation, checksums. A remote folder
    (s3, gs): the same for every file under it. No content is downloaded. A backend that reports
    nothing but a length gives a *weak* identity (flagged in the description, with a warning).
  - ``beir:<name>``: the remote identity of BEIR's public archive for `name`.
  - backbones (`kind="backbone"`, grammar in lead_core.backbone): ``package:<module>`` -> its model
    folder; ``truncate:<layers>:<source>`` -> the inner source's identity (plus the layer count);
    ``tiny:...`` -> the source string itself (generated from it, seed included); a hub id -> the
    hub's commit of its main revision (or, offline, the commit in the local Hugging Face cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lead_core.data.io import (
    RemoteError,
    RemoteNotFoundError,
    _filesystem,
    _local_path,
    is_remote,
    remote_error,
)

logger = logging.getLogger(__name__)

Kind = Literal["dataset", "backbone"]
KINDS: tuple[str, ...] = ("dataset", "backbone")
DIGEST_CHARS = 32  # 128 bits of SHA-256
# Fields of an fsspec `info()` that change when a remote object changes, lower-cased (http: response
# headers; s3fs: ETag, LastModified, VersionId; gcsfs: etag, generation, md5Hash, crc32c, updated).
REMOTE_VERSION_KEYS = (
    "etag",
    "last-modified",
    "lastmodified",
    "versionid",
    "version_id",
    "generation",
    "metageneration",
    "md5hash",
    "content-md5",
    "crc32c",
    "digest",
    "checksum",
    "updated",
    "mtime",
)
# A source that looks like a path (not a hub id) when it does not exist.
_PATH_LIKE = re.compile(r"^(/|\.{1,2}/|~|[A-Za-z]:[\\/])")


@dataclass(frozen=True)
class Identity:
    """`digest`: 32 hex characters over what identifies the source's contents (the cache key part).
    `description`: what it was computed from (JSON-able; mtimes and timings are here, not in the digest)."""

    digest: str
    description: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"digest": self.digest, **self.description}, sort_keys=True, default=str)


def _digest(identifying: Any) -> str:
    text = json.dumps(identifying, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content (hashlib's C read loop: ~1.5 GB/s on a core with SHA extensions)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _iso(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).isoformat()


def local_identity(path: str | Path) -> Identity:
    """The identity of a local file or folder (module docstring). Raises FileNotFoundError."""
    root = _local_path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    start = time.perf_counter()
    if root.is_file():
        files = [(root.name, root)]
    else:
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith("."):
                    full = Path(folder) / name
                    files.append((full.relative_to(root).as_posix(), full))
        if not files:
            raise FileNotFoundError(f"{root}: the folder holds no files")
    entries = []
    for relative, full in sorted(files):
        stat = full.stat()
        entries.append(
            {
                "path": relative,
                "size": stat.st_size,
                "mtime": _iso(stat.st_mtime_ns),
                "sha256": file_sha256(full),
            }
        )
    identifying = {"type": "local", "files": [[e["path"], e["size"], e["sha256"]] for e in entries]}
    description = {
        "type": "local",
        "path": str(root.resolve()),
        "files": entries,
        "bytes": sum(e["size"] for e in entries),
        "hash_s": round(time.perf_counter() - start, 3),
    }
    return Identity(_digest(identifying), description)


def _remote_version(info: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the version fields of one fsspec `info()`, whether any field beyond the size identifies it)."""
    version = {k: str(v) for k, v in info.items() if k.lower() in REMOTE_VERSION_KEYS and v not in (None, "")}
    strong = bool(version)
    if info.get("size") is not None:
        version["size"] = int(info["size"])
    return dict(sorted(version.items())), strong


def remote_identity(uri: str) -> Identity:
    """The identity of a remote file or folder from its backend's metadata (nothing is downloaded).

    Raises RemoteNotFoundError (a FileNotFoundError) when nothing is at `uri`, another RemoteError
    when the server cannot be asked (lead_core.data.io.remote_error says why), MissingExtraError
    when the protocol's backend is not installed.
    """
    fs = _filesystem(uri)
    start = time.perf_counter()
    try:
        info = fs.info(uri)
        if info.get("type") == "directory":
            base = fs._strip_protocol(uri).rstrip("/")
            found = fs.find(uri, detail=True)
            infos = {os.path.relpath(name, base): item for name, item in sorted(found.items())}
            if not infos:
                raise RemoteNotFoundError(f"{uri}: the remote folder holds no files")
        else:
            infos = {Path(urlparse(uri).path).name or uri: info}
    except RemoteError:
        raise
    except Exception as err:  # noqa: BLE001 - fsspec backends raise their own types; classify
        raise remote_error(uri, err) from None
    entries, weak = [], []
    for name, item in infos.items():
        version, strong = _remote_version(item)
        entries.append({"path": name, **version})
        if not strong:
            weak.append(name)
    description: dict[str, Any] = {
        "type": "remote",
        "uri": uri,
        "files": entries,
        "info_s": round(time.perf_counter() - start, 3),
    }
    if weak:
        description["weak"] = weak
        logger.warning(
            "%s: the server reports only a length for %d file(s) (e.g. %s): an edit that keeps the "
            "length is not detected",
            uri,
            len(weak),
            weak[0],
        )
    return Identity(_digest({"type": "remote", "uri": uri, "files": entries}), description)


def dataset_identity(source: str) -> Identity:
    """The identity of a dataset source as `lead ingest` accepts it (folder, archive, URI, beir:<name>)."""
    if source.startswith("beir:"):
        from lead_core.data.beir import archive_url

        inner = remote_identity(archive_url(source.removeprefix("beir:")))
        return Identity(inner.digest, {"source": source, **inner.description})
    found = remote_identity(source) if is_remote(source) else local_identity(source)
    return Identity(found.digest, {"source": source, **found.description})


def _hub_commit(repo_id: str) -> tuple[str, str]:
    """(commit of `repo_id`'s main revision, where it was found): the hub, else the local HF cache."""
    from huggingface_hub import HfApi, try_to_load_from_cache  # a dependency of transformers

    try:
        sha = HfApi().model_info(repo_id).sha
        if sha:
            return sha, "hub"
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, auth: fall back to the local cache
        hub_error = err
    else:
        hub_error = None
    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        # <cache>/models--org--name/snapshots/<commit>/config.json
        return Path(cached).parent.name, "local Hugging Face cache"
    raise RemoteError(
        f"backbone {repo_id!r}: not a local folder, and its hub revision cannot be resolved "
        f"({hub_error or 'no commit reported'}) nor found in the local Hugging Face cache: give a "
        "model folder, or run once where the hub can be reached"
    )


def backbone_identity(source: str) -> Identity:
    """The identity of a backbone source (grammar in lead_core.backbone; module docstring here)."""
    if source.startswith("tiny:"):
        return Identity(
            _digest({"type": "generated", "source": source}), {"type": "generated", "source": source}
        )
    if source.startswith("truncate:"):
        layers, _, inner_source = source.removeprefix("truncate:").partition(":")
        inner = backbone_identity(inner_source)
        description = {"type": "truncate", "source": source, "layers": layers, "of": inner.description}
        return Identity(_digest({"type": "truncate", "layers": layers, "of": inner.digest}), description)
    if source.startswith("package:"):
        from importlib import metadata

        from lead_core.backbone import package_model_dir

        module = source.removeprefix("package:")
        folder = local_identity(package_model_dir(module))
        try:
            version = metadata.version(module.replace("_", "-"))
        except metadata.PackageNotFoundError:
            version = None
        return Identity(folder.digest, {"source": source, "package_version": version, **folder.description})
    if is_remote(source) or Path(source).expanduser().exists() or _PATH_LIKE.match(source):
        found = remote_identity(source) if is_remote(source) else local_identity(source)
        return Identity(found.digest, {"source": source, **found.description})
    commit, where = _hub_commit(source)
    description = {"type": "hub", "source": source, "commit": commit, "resolved_from": where}
    return Identity(_digest({"type": "hub", "source": source, "commit": commit}), description)


def identify(source: str, kind: Kind) -> Identity:
    """The identity of a `kind` source ("dataset": what `lead ingest` reads; "backbone": lead_core.backbone)."""
    if kind == "dataset":
        return dataset_identity(source)
    if kind == "backbone":
        return backbone_identity(source)
    raise ValueError(f"identity: kind must be one of {KINDS}, got {kind!r}")


@dataclass
class Config:
    source: str = field(metadata={"help": "dataset source (as `lead ingest --source`) or backbone source"})
    kind: Kind = field(default="dataset", metadata={"help": "dataset or backbone"})
    out: str | None = field(default=None, metadata={"help": "also write the description as JSON here"})


def run(config: Config) -> dict[str, Any]:
    """Resolve and print the identity (digest first, then the JSON description); returns both."""
    from lead_core.artifacts import atomic_path

    found = identify(config.source, config.kind)
    print(found.digest)
    print(found.to_json())
    if config.out:
        with atomic_path(config.out) as tmp:
            tmp.write_text(found.to_json() + "\n")
    return {"digest": found.digest, **found.description}
