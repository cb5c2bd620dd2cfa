"""All-or-nothing outputs: check every output location before the work, commit all outputs or none.

A stage opens `atomic_outputs(out_a, out_b, ...)` before its (long) work. On entry every location
is checked (`check_writable`: parents created, a probe file written, read-only files and folders
refused), so a wrong path fails in a second, not after hours of training. The stage writes each
output to a temporary sibling (`.<name>.tmp-<host>-<pid>`); when the block exits cleanly all of
them are renamed into place together, and if one rename fails the ones already renamed are rolled
back (earlier outputs restored). On any exception the temporaries and the parent folders the
block created are removed, so a failed stage leaves the output locations as they were.

A SIGKILL cannot run cleanup code: it leaves only hidden temporaries, never a file at a final
path, and the next run at the same path removes the temporaries of processes that no longer exist
on this host. `atomic_path(final)` is the one-output case.

The final renames are one system call per output, not one atomic operation: a SIGKILL in the
microseconds between two of them leaves the outputs renamed so far (the stage has still failed,
so kfp caches nothing and no task consumes them; a rerun replaces them).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lead_core.config import ConfigError


class OutputNotWritableError(ConfigError):
    """An output location cannot be written; the message names the path and why."""


_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _temp_name(final: Path, kind: str) -> Path:
    return final.parent / f".{final.name}.{kind}-{_HOST}-{os.getpid()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(final: str | Path) -> list[Path]:
    """Remove the temporaries left beside `final` by killed processes of this host; return them.

    Temporaries of live processes (a concurrent writer) and of other hosts (a shared volume) are
    left alone: only this host can tell whether one of its processes is gone.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    # Nested atomic writes (a Parquet file written into a temporary folder's sibling) add suffixes.
    pattern = re.compile(rf"^\.+{re.escape(final.name)}(?:\.(?:tmp|old)-{re.escape(_HOST)}-(\d+))+$")
    removed = []
    for path in final.parent.iterdir():
        match = pattern.match(path.name)
        if match and not _alive(int(match.group(1))):
            _remove(path)
            removed.append(path)
    return removed


def _read_only(path: Path) -> bool:
    # Mode bits as well as access(): root may write anything, but a file or folder marked
    # read-only is the user's "do not overwrite".
    return not os.access(path, os.W_OK) or not path.stat().st_mode & (
        stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    )


def _prepare(final: Path, created: list[Path]) -> None:
    """Create `final`'s missing parents (appended to `created`) and probe-write beside `final`."""
    missing = []
    folder = final.parent
    while not folder.exists() and not folder.is_symlink():
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise OutputNotWritableError(f"{final}: cannot write here: {folder} is not a folder")
    for parent in reversed(missing):
        try:
            parent.mkdir()
        except OSError as err:
            raise OutputNotWritableError(
                f"{final}: cannot create the folder {parent} ({err.strerror or err})"
            ) from None
        created.append(parent)
    parent = final.parent
    if final.exists() and _read_only(final):
        kind = "folder" if final.is_dir() else "file"
        raise OutputNotWritableError(
            f"{final}: the existing output {kind} is read-only; make it writable or choose another path"
        )
    if _read_only(parent):
        raise OutputNotWritableError(f"{final}: the folder {parent} is read-only; choose another output path")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{final.name}.probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputNotWritableError(
            f"{final}: cannot write to the folder {parent} ({err.strerror or err})"
        ) from None


def _remove_created(created: list[Path]) -> None:
    for folder in reversed(created):
        try:
            folder.rmdir()  # only if still empty: never a folder someone else has written to
        except OSError:
            pass


def check_writable(*paths: str | Path | None) -> None:
    """Raise OutputNotWritableError naming the first output in `paths` (None skipped) that cannot be
    written. Leaves the file system as it was (parents created for the probe are removed again)."""
    created: list[Path] = []
    try:
        for path in paths:
            if path is not None:
                _prepare(Path(path), created)
    finally:
        _remove_created(created)


def _commit(pairs: list[tuple[Path, Path]]) -> None:
    """Rename every temporary to its final path; on a failure undo the renames already done."""
    moved_aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for final, _ in pairs:
            if final.exists() or final.is_symlink():
                # Move the old output aside first so that `final` is never half old, half new.
                old = _temp_name(final, "old")
                _remove(old)
                os.replace(final, old)
                moved_aside.append((final, old))
        for final, tmp in pairs:
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for final in placed:
            _remove(final)
        for final, old in moved_aside:
            os.replace(old, final)
        raise
    for _, old in moved_aside:
        _remove(old)


@contextmanager
def atomic_outputs(*finals: str | Path | None, overwrite: bool = True) -> Iterator[list[Path | None]]:
    """Yield one temporary path per output in `finals` (None for None); commit all or none.

    Checks every location on entry (OutputNotWritableError). The block must create each temporary
    (file or folder); one it did not write is an error, as is any exception: then no output is
    touched. With `overwrite=False` an existing output is an error, so nothing silently reuses a
    stale one.
    """
    paths = [None if f is None else Path(f) for f in finals]
    given = [p for p in paths if p is not None]
    resolved = [p.resolve() for p in given]
    if len(set(resolved)) != len(resolved):
        duplicate = next(p for p in given if resolved.count(p.resolve()) > 1)
        raise ConfigError(f"{duplicate}: given for two outputs of the same stage")
    created: list[Path] = []
    try:
        for final in given:
            _prepare(final, created)
            if final.exists() and not overwrite:
                raise FileExistsError(f"{final}: output exists; remove it or choose another path")
            remove_stale_temporaries(final)
    except BaseException:
        _remove_created(created)
        raise
    temps = [None if p is None else _temp_name(p, "tmp") for p in paths]
    pairs = [(p, t) for p, t in zip(paths, temps) if p is not None and t is not None]
    for _, tmp in pairs:
        _remove(tmp)
    try:
        yield temps
        for final, tmp in pairs:
            if not (tmp.exists() or tmp.is_symlink()):
                raise RuntimeError(f"{final}: the stage wrote nothing")
        _commit(pairs)
    except BaseException:
        for _, tmp in pairs:
            _remove(tmp)
        _remove_created(created)
        raise


@contextmanager
def atomic_path(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success move it to `final` (file or folder).

    The one-output case of `atomic_outputs` (location checked on entry, nothing left on failure).
    """
    with atomic_outputs(final, overwrite=overwrite) as (tmp,):
        yield tmp
