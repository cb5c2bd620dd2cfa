"""Atomic artifacts: a stage writes to a temporary sibling path and renames it at the end.

A killed stage therefore leaves nothing at the final path that a cache or the next stage could
mistake for a result; the temporary sibling (`.<name>.tmp-<pid>`) is removed on any exception.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success move it to `final` (file or directory).

    With `overwrite=False` an existing `final` is an error, so nothing silently reuses a stale
    output. On failure the temporary path is deleted and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: output exists; remove it or choose another path")
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{final}: the stage wrote nothing")
        if final.exists():
            # Move the old output aside first so that `final` is never half old, half new.
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            _remove(old)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
