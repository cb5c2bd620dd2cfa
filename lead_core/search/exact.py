"""Exact inner-product top-k on torch: the search path where faiss has no GPU build.

faiss-gpu wheels are tied to one CUDA major version and often absent; a flat index is only a
matrix, so exact search is a matmul and a top-k. The corpus [N, d] lives on the device (fp16 or
bf16 on a GPU, fp32 on CPU); each block of queries is scored against one corpus block at a time
(the score matrix stays [query_block, corpus_block]) with fp32 accumulation and output, and a
running top-k is merged block by block. Results equal faiss's IndexFlatIP up to the order of
(near-)tied scores.

`read_flat_index` reads faiss's IndexFlatIP file without faiss, so the GPU path needs no faiss at all.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lead_core.config import ConfigError
from lead_core.data.schema import SchemaError

# faiss's write_index of an IndexFlatIP: fourcc, d (int32), ntotal (int64), two unused int64,
# is_trained (bool), metric type (int32; 0 = inner product), then the vectors as a
# length-prefixed (uint64) float32 array.
_FLAT_HEADER = struct.Struct("<4siqqq?i")
_FLAT_FOURCC = b"IxFI"
_METRIC_INNER_PRODUCT = 0

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def read_flat_index(path: str | Path, rows_per_read: int = 262_144):
    """(d, ntotal, an iterator over [<=rows_per_read, d] float32 row blocks) of a faiss IndexFlatIP file."""
    path = Path(path)
    with open(path, "rb") as fh:
        header = fh.read(_FLAT_HEADER.size + 8)
    if len(header) < _FLAT_HEADER.size + 8:
        raise SchemaError(f"{path}: too short for a faiss flat index")
    fourcc, d, ntotal, _, _, _, metric = _FLAT_HEADER.unpack_from(header)
    if fourcc != _FLAT_FOURCC or metric != _METRIC_INNER_PRODUCT:
        raise SchemaError(
            f"{path}: not a faiss IndexFlatIP file (fourcc {fourcc!r}, metric {metric}); "
            "the torch search path reads only the flat inner-product index `lead index` writes"
        )
    (size,) = struct.unpack_from("<Q", header, _FLAT_HEADER.size)
    if size != d * ntotal:
        raise SchemaError(f"{path}: holds {size} floats, expected {ntotal} vectors x {d}")
    offset = _FLAT_HEADER.size + 8
    expected_bytes = offset + 4 * size
    if path.stat().st_size < expected_bytes:
        raise SchemaError(f"{path}: truncated ({path.stat().st_size} bytes, expected {expected_bytes})")

    def blocks():
        with open(path, "rb") as fh:
            fh.seek(offset)
            for start in range(0, ntotal, rows_per_read):
                n = min(rows_per_read, ntotal - start)
                yield np.frombuffer(fh.read(4 * n * d), dtype=np.float32).reshape(n, d)

    return d, ntotal, blocks()


def _scores(queries: Tensor, block: Tensor) -> Tensor:
    """[q, c] float32 inner products of queries [q, d] and a corpus block [c, d] (same dtype).

    On a GPU, half-precision inputs are multiplied with fp32 accumulation straight into an fp32
    result (torch.mm's out_dtype, torch >= 2.8); elsewhere in the inputs' precision, then cast.
    """
    if queries.dtype != torch.float32 and queries.is_cuda:
        try:
            return torch.mm(queries, block.T, out_dtype=torch.float32)
        except (TypeError, RuntimeError):  # an older torch: no out_dtype
            pass
    return (queries @ block.T).float()


def exact_topk(corpus: Tensor, queries: Tensor, k: int, corpus_block: int = 1 << 20) -> tuple[Tensor, Tensor]:
    """Top-k of every query by inner product over the whole corpus, exactly.

    corpus: [N, d]; queries: [q, d] (cast to the corpus's dtype and device).
    Returns (scores [q, k'] float32 descending, rows [q, k'] int64 corpus rows), k' = min(k, N).
    Memory: one [q, corpus_block] fp32 score matrix plus its top-k at a time.
    """
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"query vectors have size {queries.shape[1]}, the corpus {corpus.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    queries = queries.to(device=corpus.device, dtype=corpus.dtype)
    k = min(k, corpus.shape[0])
    best_scores = best_rows = None
    for start in range(0, corpus.shape[0], corpus_block):
        block_scores = _scores(queries, corpus[start : start + corpus_block])
        scores, rows = block_scores.topk(min(k, block_scores.shape[1]), dim=1)
        del block_scores
        rows += start
        if best_scores is not None:
            # Running merge of the best so far with this block's best (tied scores: any order).
            merged = torch.cat([best_scores, scores], dim=1)
            scores, pick = merged.topk(min(k, merged.shape[1]), dim=1)
            rows = torch.cat([best_rows, rows], dim=1).gather(1, pick)
        best_scores, best_rows = scores, rows
    return best_scores, best_rows


class TorchFlatIndex:
    """An exact inner-product index on a torch device with faiss's `d`, `ntotal` and `search`.

    vectors: [N, d] on `device` in `dtype` (fp16/bf16 on a GPU: half the memory of fp32).
    """

    def __init__(
        self,
        vectors: Tensor,
        query_block: int = 8192,
        corpus_block: int = 1 << 20,
    ):
        self.vectors = vectors
        self.d, self.ntotal = vectors.shape[1], vectors.shape[0]
        self.query_block, self.corpus_block = query_block, corpus_block

    @classmethod
    def from_file(
        cls, path: str | Path, device: torch.device, dtype: torch.dtype = torch.float32, **blocks
    ) -> TorchFlatIndex:
        """Stream a faiss IndexFlatIP file onto `device` in `dtype` (host memory: one read block)."""
        d, ntotal, parts = read_flat_index(path)
        vectors = torch.empty((ntotal, d), dtype=dtype, device=device)
        start = 0
        for part in parts:
            vectors[start : start + len(part)] = torch.from_numpy(part.copy()).to(device, dtype)
            start += len(part)
        return cls(vectors, **blocks)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's signature: (scores [n, k] float32, rows [n, k] int64) of queries [n, d] (numpy)."""
        out_scores, out_rows = [], []
        for start in range(0, len(queries), self.query_block):
            block = torch.from_numpy(np.ascontiguousarray(queries[start : start + self.query_block]))
            scores, rows = exact_topk(self.vectors, block, k, self.corpus_block)
            out_scores.append(scores.cpu().numpy())
            out_rows.append(rows.cpu().numpy())
        return np.concatenate(out_scores), np.concatenate(out_rows)


def search_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The corpus precision of the torch path: "auto" is fp16 on a GPU, fp32 on CPU."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in DTYPES:
        raise ConfigError(f"search precision must be auto, {', '.join(DTYPES)}; got {precision!r}")
    if device.type == "cpu" and precision != "fp32":
        raise ConfigError(f"search precision {precision} is for GPUs; on CPU the torch path uses fp32")
    return DTYPES[precision]
