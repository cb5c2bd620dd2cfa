"""BM25 retrieval and phase-1 training groups (`lead bm25`)."""

from lead_core.bm25.index import BM25Index, make_tokenizer
from lead_core.bm25.stage import Config, run

__all__ = ["BM25Index", "Config", "make_tokenizer", "run"]
