"""`lead index`: an exact inner-product faiss index over an embeddings directory (see `stage`)."""

from lead_core.index.stage import (
    FORMAT,
    IDS_FILE,
    INDEX_FILE,
    META_FILE,
    Config,
    build_index,
    load_index,
    read_index_files,
    run,
)

__all__ = [
    "FORMAT",
    "IDS_FILE",
    "INDEX_FILE",
    "META_FILE",
    "Config",
    "build_index",
    "load_index",
    "read_index_files",
    "run",
]
