"""Opening dataset files: local paths or remote URIs, gzip and bzip2 handled transparently.

Remote URIs (``http(s)://``, ``s3://``, ``gs://`` and anything else fsspec knows) are downloaded
once into a cache folder (``$LEAD_CACHE_DIR``, default ``~/.cache/lead``) with a progress bar,
then read from there. A cached file is keyed by its URI and by what the server reports for it
(ETag, Last-Modified, length, version: lead_core.identity), so a file changed at the same URI
is downloaded again; it appears only when its download
finished (written through `atomic_path`), so an interrupted download is never mistaken for a
complete one. Archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``) are unpacked once
beside it.

The protocol backends are optional extras: http(s) needs ``aiohttp`` (a dependency), s3 ``s3fs``,
gs ``gcsfs`` (``pip install 'lead-core[remote]'``); they are imported only when a URI needs them.

Errors say what to do (all are `lead_core.errors.UserError`s): a truncated or corrupt compressed
file or archive is a `CorruptFileError` naming it; a remote URI that cannot be read is a
`RemoteError` whose message tells a DNS failure, a refused connection, "access denied" (HTTP
401/403) and "not found" (HTTP 404) apart; a missing backend is a `MissingExtraError`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import itertools
import lzma
import os
import socket
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from tqdm.auto import tqdm

from lead_core.artifacts import atomic_path
from lead_core.config import ConfigError
from lead_core.data.schema import SchemaError
from lead_core.errors import MissingExtraError, UserError, install_hint

CACHE_ENV = "LEAD_CACHE_DIR"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2")
# Suffixes of single compressed files that `open_text` reads transparently (detected by magic bytes).
COMPRESSED_SUFFIXES = (".gz", ".bz2")
# The package that provides each protocol's fsspec filesystem, and the extra that installs it
# (None: a dependency of lead-core itself).
_PROTOCOL_PACKAGES = {
    "http": ("aiohttp", None),
    "https": ("aiohttp", None),
    "s3": ("s3fs", "remote"),
    "gs": ("gcsfs", "remote"),
    "gcs": ("gcsfs", "remote"),
}


class RemoteError(UserError, OSError):
    """A remote URI could not be read; `reason` is "dns", "refused", "denied", "not-found" or "other"."""

    def __init__(self, message: str, reason: str = "other"):
        super().__init__(message)
        self.reason = reason


class RemoteNotFoundError(RemoteError, FileNotFoundError):
    """The server answered that the remote file does not exist (HTTP 404, no such key)."""

    def __init__(self, message: str):
        super().__init__(message, "not-found")


class CorruptFileError(SchemaError):
    """A compressed file or archive cannot be decompressed: truncated (e.g. a cut download) or damaged."""


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
    """The fsspec filesystem for `uri`, or a MissingExtraError naming the extra to install."""
    import fsspec

    protocol = urlparse(uri).scheme
    try:
        return fsspec.filesystem(protocol)
    except ImportError as err:
        package, extra = _PROTOCOL_PACKAGES.get(protocol, (f"an fsspec backend for {protocol}://", None))
        hint = f"{install_hint(extra)} (or pip install {package})" if extra else f"pip install {package}"
        raise MissingExtraError(
            f"{uri}: reading {protocol}:// URIs needs the Python package {package}, which is not "
            f"installed: {hint}"
        ) from err
    except ValueError as err:  # fsspec knows no such protocol
        raise RemoteError(f"{uri}: no filesystem for {protocol}:// URIs ({err})") from None


def _causes(err: BaseException) -> list[BaseException]:
    """`err` and the exceptions it was raised from, outermost first (fsspec wraps the real cause)."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def remote_error(uri: str, err: BaseException) -> RemoteError:
    """A RemoteError for a failed read of `uri` that says which of four things went wrong and what to do.

    fsspec's http filesystem reports every failure as a FileNotFoundError; the cause it wraps tells
    a DNS failure (socket.gaierror), a refused connection, and the HTTP status apart.
    """
    parts = urlparse(uri)
    host = parts.hostname or "?"
    chain = _causes(err)
    if any(isinstance(e, socket.gaierror) for e in chain):
        return RemoteError(
            f"{uri}: cannot resolve the host name {host!r} (DNS lookup failed): "
            "check the host name in the URI and this machine's network/DNS settings",
            "dns",
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, "?")
        return RemoteError(
            f"{uri}: connection refused by {host}:{port}: no server listens there; "
            "check the port in the URI and that the server is running",
            "refused",
        )
    status = next((e.status for e in chain if isinstance(getattr(e, "status", None), int)), None)
    if status in (401, 403) or (status is None and any(isinstance(e, PermissionError) for e in chain)):
        code = f"HTTP {status}" if status else "permission denied"
        return RemoteError(
            f"{uri}: access denied ({code}): the server refuses to serve it to this client; "
            "check the URI and the credentials (e.g. AWS_*/GOOGLE_* variables) or make the file readable",
            "denied",
        )
    if status == 404 or (status is None and isinstance(chain[-1], FileNotFoundError)):
        return RemoteNotFoundError(
            f"{uri}: no such remote file ({'HTTP 404' if status else 'not found'}): check the path in the URI"
        )
    detail = f"HTTP {status}" if status else f"{type(chain[-1]).__name__}: {chain[-1]}"
    return RemoteError(f"{uri}: download failed ({detail})")


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
    except Exception as err:  # noqa: BLE001 - some servers answer no HEAD/size; download without a total
        error = remote_error(uri, err)
        if error.reason != "other":
            raise error from None
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
        except Exception as err:  # noqa: BLE001 - fsspec backends raise their own types; classify
            raise remote_error(uri, err) from None


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
    target = cache_path(f"{uri}#{_remote_digest(uri)}")
    if not target.exists():
        _download(uri, target)
    return target


def _remote_digest(uri: str) -> str:
    """What the server reports for `uri` now (ETag, Last-Modified, length, version), as a digest.

    Part of every download's cache key: a file changed at the same URI is downloaded again instead
    of being read from an older download.
    """
    from lead_core.identity import remote_identity  # identity builds on this module

    return remote_identity(uri).digest


def _is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


# What a truncated or damaged compressed stream raises: EOFError (cut short), zlib.error and
# lzma.LZMAError (bad data), OSError (gzip.BadGzipFile, a CRC mismatch, bz2's "Invalid data stream").
_DECOMPRESS_ERRORS = (EOFError, zlib.error, lzma.LZMAError, OSError)
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
)


def _corrupt(path: Path, kind: str, err: BaseException) -> CorruptFileError:
    """The error for a `kind` ("gzip", "zip", ...) file that cannot be decompressed."""
    state = "truncated" if isinstance(err, EOFError) or "end of data" in str(err) else "truncated or corrupt"
    hint = "download it again"
    if path.is_relative_to(cache_dir()):
        hint = f"it is a cached download: delete {path} and run again to download it anew"
    detail = " ".join(str(err).split())  # tarfile's message spans several lines
    return CorruptFileError(f"{path}: the {kind} file is {state} ({detail}); {hint}")


def _archive_kind(name: str) -> str:
    name = name.lower()
    if name.endswith(".zip"):
        return "zip"
    return next(
        (
            kind
            for suffix, kind in (
                (".gz", "tar.gz"),
                (".tgz", "tar.gz"),
                (".bz2", "tar.bz2"),
                (".tbz2", "tar.bz2"),
            )
            if name.endswith(suffix)
        ),
        "tar",
    )


def _unpack(archive: Path, target: Path) -> None:
    """Unpack `archive` into the directory `target` atomically (refusing members that escape it)."""
    try:
        _extract(archive, target)
    except _ARCHIVE_ERRORS as err:
        raise _corrupt(archive, _archive_kind(archive.name), err) from None


def _extract(archive: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise SchemaError(f"{archive}: member {member!r} would unpack outside the folder")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse members escaping tmp
                    tf.extractall(tmp, filter="data")
                else:
                    for member in tf.getmembers():
                        if Path(member.name).is_absolute() or ".." in Path(member.name).parts:
                            raise SchemaError(
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
        raise ConfigError(f"{uri}: an http(s) dataset must be an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    target = cache_path(f"{uri}/#{_remote_digest(uri)}").parent / "folder"
    if not target.exists():
        fs = _filesystem(uri)
        try:
            is_dir = fs.isdir(uri)
        except Exception as err:  # noqa: BLE001 - backend-specific types; classify
            raise remote_error(uri, err) from None
        if not is_dir:
            raise RemoteNotFoundError(f"{uri}: no such remote folder")
        with atomic_path(target) as tmp:
            try:
                files = fs.find(uri)
                for remote in tqdm(files, desc=f"download {uri}", unit="file"):
                    local = tmp / os.path.relpath(remote, fs._strip_protocol(uri))
                    local.parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(remote, str(local))
            except Exception as err:  # noqa: BLE001
                raise remote_error(uri, err) from None
    return target


class _CheckedStream(io.RawIOBase):
    """A decompressing binary stream whose read errors become a CorruptFileError naming the file."""

    def __init__(self, inner: io.BufferedIOBase, path: Path, kind: str):
        self._inner = inner
        self._path = path
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._inner.readinto(buffer)
        except _DECOMPRESS_ERRORS as err:
            raise _corrupt(self._path, self._kind, err) from None

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_binary(uri: str | Path) -> io.BufferedIOBase:
    """Open a (possibly gzip- or bzip2-compressed, possibly remote) file as decompressed bytes.

    The compression is recognised by the file's magic bytes, not its name. A truncated or
    corrupt compressed stream raises CorruptFileError naming the file when the damage is read.
    """
    path = resolve(uri)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a file, found a folder")
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return io.BufferedReader(_CheckedStream(gzip.open(path, "rb"), path, "gzip"), 2**20)
    if magic == b"BZh":
        return io.BufferedReader(_CheckedStream(bz2.open(path, "rb"), path, "bzip2"), 2**20)
    return open(path, "rb")


def open_text(uri: str | Path) -> TextIO:
    """Open a (possibly gzipped, possibly remote) text file for reading as UTF-8 lines.

    A leading byte-order mark is dropped. Lines split on ``\\n`` only, so unusual separators
    inside a passage (``\\r``, U+2028) stay text.
    """
    return io.TextIOWrapper(open_binary(uri), encoding="utf-8-sig", newline="\n")


def _first_bad_utf8_line(path: Path) -> int:
    with open_binary(path) as fh:
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
