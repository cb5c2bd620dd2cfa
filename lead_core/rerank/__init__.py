"""`lead rerank`: a ColBERT, cross-encoder or dual-encoder model re-scores a run's top-k (see `stage`)."""

from lead_core.rerank.stage import Config, append_tail, run, split_at

__all__ = ["Config", "append_tail", "run", "split_at"]
