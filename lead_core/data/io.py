"""Opening dataset files: local paths or remote URIs, gzip handled transparently."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import TextIO


def open_text(path: str | Path) -> TextIO:
    """Open a (possibly gzipped) text file for reading as UTF-8 lines."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")
