"""`lead encode`: embeddings of a corpus or of queries with a dual encoder (see `stage`, `store`).

Names are imported lazily, so that `lead_core.encode.store` (used by `lead index`) can be read
without importing torch and the models.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Config": "stage",
    "encode_texts": "stage",
    "run": "stage",
    "token_lengths": "stage",
    "inference_precision": "runtime",
    "load_for_inference": "runtime",
    "max_length_override": "runtime",
    "resolve_device": "runtime",
    "iter_embeddings": "store",
    "read_embeddings": "store",
    "read_meta": "store",
    "write_shard": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
