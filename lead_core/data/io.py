"""Opening dataset files: local paths or remote URIs, gzip handled transparently.

Remote URIs (``http(s)://``, ``s3://``, ``gs://`` and anything else fsspec knows) are downloaded
once into a cache folder (``$LEAD_CACHE_DIR``, default ``~/.cache/lead``) with a progress bar,
then read from there. A cached file is keyed by its URI and appears only when its download
finished (written through `atomic_path`), so an interrupted download is never mistaken for a
complete one. Archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) are unpacked once beside it.

The protocol backends are optional extras: http(s) needs ``aiohttp``, s3 ``s3fs``, gs ``gcsfs``
(``pip install lead-core[remote]``); they are imported only when a URI needs them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from tqdm.auto import tqdm

from lead_core.artifacts import atomic_path
from lead_core.data.schema import SchemaError

CACHE_ENV = "LEAD_CACHE_DIR"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# The package that provides each protocol's fsspec filesystem, for the error message when missing.
_PROTOCOL_PACKAGES = {"http": "aiohttp", "https": "aiohttp", "s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


class RemoteError(OSError):
    """A remote URI could not be read (missing backend package, network or server error)."""


def cache_dir() -> Path:
    """The download cache: ``$LEAD_CACHE_DIR`` or ``~/.cache/lead``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lead").expanduser()


def is_remote(uri: str | Path) -> bool:
    """True for a URI with a scheme other than ``file://`` (a Windows drive letter is not a scheme)."""
    scheme = urlparse(str(uri)).scheme
    return len(scheme) > 1 and scheme != "file"


def _local_path(uri: str | Path) -> Path:
    text = str(uri)
    if text.startswith("file://"):
        text = urlparse(text).path
    return Path(text).expanduser()


def _filesystem(uri: str):
    """The fsspec filesystem for `uri`, or a RemoteError naming the package to install."""
    import fsspec

    protocol = urlparse(uri).scheme
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as err:
        package = _PROTOCOL_PACKAGES.get(protocol, f"an fsspec backend for {protocol!r}")
        raise RemoteError(
            f"{uri}: reading {protocol}:// URIs needs {package} "
            f"(pip install {package}, or pip install lead-core[remote]): {err}"
        ) from err


def cache_path(uri: str) -> Path:
    """Where the download of `uri` is cached: ``<cache>/downloads/<sha256(uri)[:16]>/<file name>``."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    name = Path(urlparse(uri).path).name or "download"
    return cache_dir() / "downloads" / digest / name


def _download(uri: str, target: Path) -> None:
    """Copy remote `uri` to `target` atomically, with a byte progress bar."""
    fs = _filesystem(uri)
    try:
        size = fs.info(uri).get("size")
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no such remote file") from None
    except Exception:  # noqa: BLE001 - some servers answer no HEAD/size; download without a total
        size = None
    with atomic_path(target) as tmp:
        try:
            with (
                fs.open(uri, "rb", block_size=2**20) as src,
                open(tmp, "wb") as dst,
                tqdm(total=size, unit="B", unit_scale=True, desc=f"download {target.name}") as bar,
            ):
                while chunk := src.read(2**20):
                    dst.write(chunk)
                    bar.update(len(chunk))
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri}: no such remote file") from None
        except OSError as err:
            raise RemoteError(f"{uri}: download failed: {err}") from err


def resolve(uri: str | Path) -> Path:
    """A local path for `uri`: the path itself if local, else the cached download (fetched once).

    Raises FileNotFoundError when the file does not exist, locally or remotely.
    """
    if not is_remote(uri):
        path = _local_path(uri)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        return path
    uri = str(uri)
    target = cache_path(uri)
    if not target.exists():
        _download(uri, target)
    return target


def _is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _unpack(archive: Path, target: Path) -> None:
    """Unpack `archive` into the directory `target` atomically (refusing members that escape it)."""
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise ValueError(f"{archive}: member {member!r} would unpack outside the folder")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse members escaping tmp
                    tf.extractall(tmp, filter="data")
                else:
                    for member in tf.getmembers():
                        if Path(member.name).is_absolute() or ".." in Path(member.name).parts:
                            raise ValueError(
                                f"{archive}: member {member.name!r} would unpack outside the folder"
                            )
                    tf.extractall(tmp)


def resolve_dir(uri: str | Path) -> Path:
    """A local folder for a dataset URI: a local folder, an archive (local or remote), or a remote folder.

    Archives are unpacked once into the cache; when the archive holds one top-level folder (as
    BEIR's ``scifact.zip`` holds ``scifact/``), that folder is returned. Remote folders (s3, gs)
    are copied into the cache once; plain http(s) servers cannot list folders, so point those at
    an archive.
    """
    if _is_archive(uri):
        archive = resolve(uri)
        if is_remote(uri):
            target = archive.parent / "unpacked"
        else:
            # A local archive may change in place: key its unpacked copy by path, size and mtime.
            stat = archive.stat()
            key = f"{archive.resolve().as_uri()}?size={stat.st_size}&mtime={stat.st_mtime_ns}"
            target = cache_path(key).parent / "unpacked"
        if not target.exists():
            _unpack(archive, target)
        entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else target
    if not is_remote(uri):
        path = resolve(uri)
        if not path.is_dir():
            raise NotADirectoryError(
                f"{path}: expected a dataset folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})"
            )
        return path
    uri = str(uri).rstrip("/")
    if urlparse(uri).scheme in ("http", "https"):
        raise ValueError(f"{uri}: an http(s) dataset must be an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    target = cache_path(uri + "/").parent / "folder"
    if not target.exists():
        fs = _filesystem(uri)
        if not fs.isdir(uri):
            raise FileNotFoundError(f"{uri}: no such remote folder")
        with atomic_path(target) as tmp:
            files = fs.find(uri)
            for remote in tqdm(files, desc=f"download {uri}", unit="file"):
                local = tmp / os.path.relpath(remote, fs._strip_protocol(uri))
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(local))
    return target


def open_text(uri: str | Path) -> TextIO:
    """Open a (possibly gzipped, possibly remote) text file for reading as UTF-8 lines.

    A leading byte-order mark is dropped. Lines split on ``\\n`` only, so unusual separators
    inside a passage (``\\r``, U+2028) stay text.
    """
    path = resolve(uri)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a file, found a folder")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="\n")
    return open(path, encoding="utf-8-sig", newline="\n")


def _first_bad_utf8_line(path: Path) -> int:
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    with (gzip.open if gzipped else open)(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return -1


def iter_line_batches(uri: str | Path, batch_size: int = 100_000) -> Iterator[tuple[int, list[str]]]:
    """Stream a text file as (number of the batch's first line, up to `batch_size` lines).

    Lines keep no trailing newline. Memory holds one batch, whatever the file's size. Invalid
    UTF-8 raises a SchemaError naming the file and line.
    """
    path = resolve(uri)
    first = 1
    with open_text(path) as fh:
        while True:
            try:
                chunk = list(itertools.islice(fh, batch_size))
            except UnicodeDecodeError as err:
                line = _first_bad_utf8_line(path)
                raise SchemaError(f"{path}: line {line}: not valid UTF-8 ({err.reason})") from None
            if not chunk:
                return
            yield first, [line.rstrip("\r\n") for line in chunk]
            first += len(chunk)
