"""`lead search`: exact top-k search of query embeddings against an index (see `stage`; the torch
path is `exact`)."""

from lead_core.search.stage import (
    Config,
    choose_backend,
    faiss_installed,
    gpu_available,
    run,
    run_table,
    search_batches,
)

__all__ = [
    "Config",
    "choose_backend",
    "faiss_installed",
    "gpu_available",
    "run",
    "run_table",
    "search_batches",
]
