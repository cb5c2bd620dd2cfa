"""`lead search`: encode queries with a dual encoder and retrieve their exact top-k from a faiss index.

Writes a RUN Parquet (rows in search order: score descending per query) and, when asked, a TREC
run file (ties broken by doc id there, by `lead_core.data.trec.write_trec_run`).

Backends (`backend`): faiss (IndexFlatIP, on a GPU when faiss has one) or torch (`exact`: chunked
matmul + top-k, fp16 on a GPU; needs no faiss). "auto" takes faiss's GPU build if there is one,
else torch on a GPU, else faiss on CPU (torch on CPU without faiss). Both are exact.
Several processes (torchrun or `lead search --nproc N`): each rank searches a contiguous share of
the queries on its GPU; rank 0 gathers the results and writes the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from lead_core import distributed
from lead_core.artifacts import atomic_outputs
from lead_core.config import ConfigError, to_dict
from lead_core.data.schema import QUERIES, RUN, SchemaError, open_writer, read_table
from lead_core.data.trec import write_trec_run
from lead_core.tracking import stage_run

log = logging.getLogger(__name__)

UseGpu = Literal["auto", "yes", "no"]
Backend = Literal["auto", "faiss", "torch"]
GPU_MAX_K = 2048  # faiss's GPU k-selection limit


@dataclass
class Config:
    index: str = field(metadata={"help": "index directory written by `lead index`"})
    model: str = field(
        metadata={"help": "saved dual-encoder (de) model directory, the one that encoded the corpus"}
    )
    queries: str = field(metadata={"help": "QUERIES Parquet artifact"})
    out_run: str = field(metadata={"help": "RUN Parquet to write"})
    out_trec: str | None = field(default=None, metadata={"help": "also write a TREC run file here"})
    k: int = field(default=1000, metadata={"help": "results per query"})
    batch_size: int = field(default=256, metadata={"help": "queries per encoder batch"})
    search_batch_size: int = field(default=4096, metadata={"help": "queries per search call"})
    max_length: int | None = field(
        default=None, metadata={"help": "query token limit (default: the model's)"}
    )
    device: str = field(default="auto", metadata={"help": "encoder device: auto, cpu, cuda, cuda:1, ..."})
    use_gpu: UseGpu = field(
        default="auto", metadata={"help": "search the index on a GPU (auto: when faiss and torch see one)"}
    )
    backend: Backend = field(
        default="auto",
        metadata={
            "help": "faiss, torch (exact matmul + top-k; no faiss needed) or auto (see the module doc)"
        },
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = field(
        default="auto", metadata={"help": "torch backend's corpus precision (auto: fp16 on GPU, fp32 on CPU)"}
    )
    tag: str = field(default="lead", metadata={"help": "run tag of the TREC file"})


def _faiss():
    from lead_core.index.stage import _faiss as faiss_module

    return faiss_module()


def faiss_installed() -> bool:
    try:
        _faiss()
    except ImportError:
        return False
    return True


def gpu_available() -> bool:
    """True when both faiss (a GPU build) and torch see a CUDA device."""
    if not faiss_installed():
        return False
    faiss = _faiss()
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def to_search_device(index, use_gpu: UseGpu = "auto", float16: bool = False, gpu: int = 0):
    """The index itself on CPU, or a GPU copy (float16 storage when `float16`) when a GPU is used."""
    if use_gpu == "no":
        return index
    if not gpu_available():
        if use_gpu == "yes":
            raise ConfigError(
                "use_gpu=yes but faiss has no GPU (install faiss-gpu) or torch sees no CUDA device"
            )
        return index
    faiss = _faiss()
    options = faiss.GpuClonerOptions()
    options.useFloat16 = float16
    resources = faiss.StandardGpuResources()
    gpu_index = faiss.index_cpu_to_gpu(resources, gpu, index, options)
    gpu_index.lead_resources = resources  # keep the resources alive as long as the index
    return gpu_index


def search_batches(
    index, queries: np.ndarray, k: int, batch_size: int = 4096, progress: bool = True
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Exact top-k by inner product, block by block.

    queries: [n, d] (cast to float32). Yields (first query row, scores [b, k'] float32 descending,
    rows [b, k'] int64 index rows) with k' = min(k, index.ntotal).
    """
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(
            f"query vectors have shape {queries.shape}, the index holds vectors of size {index.d}"
        )
    k = min(k, index.ntotal)
    for start in tqdm(range(0, len(queries), batch_size), desc="search", unit="batch", disable=not progress):
        block = np.ascontiguousarray(queries[start : start + batch_size], dtype=np.float32)
        scores, rows = index.search(block, k)
        yield start, scores, rows


def run_table(query_ids: list[str], doc_ids: pa.Array, scores: np.ndarray, rows: np.ndarray) -> pa.Table:
    """A RUN table from top-k blocks: query_ids [b], doc_ids (the index's ids), scores/rows [b, k]."""
    if (rows < 0).any():  # faiss pads with -1 only when k > ntotal, which search_batches prevents
        raise ValueError("faiss returned fewer results than asked for")
    b, k = rows.shape
    return pa.table(
        {
            "query_id": pa.array(np.repeat(np.asarray(query_ids, dtype=object), k), pa.string()),
            "doc_id": pc.take(doc_ids, pa.array(rows.reshape(-1))),
            "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), b)),
            "score": pa.array(scores.reshape(-1).astype(np.float32)),
        }
    )


def choose_backend(backend: Backend, use_gpu: UseGpu, device) -> str:
    """ "faiss" or "torch" for `backend` ("auto": faiss's GPU build, else torch on a CUDA `device`,
    else faiss on CPU, else torch on CPU)."""
    if backend not in ("auto", "faiss", "torch"):
        raise ConfigError(f"backend must be auto, faiss or torch, got {backend!r}")
    if backend != "auto":
        return backend
    if use_gpu != "no" and gpu_available():
        return "faiss"
    if use_gpu != "no" and device.type == "cuda":
        return "torch"
    return "faiss" if faiss_installed() else "torch"


def open_index(config: Config, device):
    """(searcher with faiss's d/ntotal/search, ids, meta, backend) of the config's index directory."""
    import torch

    from lead_core.index import load_index, read_index_files
    from lead_core.search.exact import TorchFlatIndex, search_dtype

    backend = choose_backend(config.backend, config.use_gpu, device)
    if backend == "faiss":
        index, ids, meta = load_index(config.index)
        float16 = meta["embeddings_dtype"] == "float16"
        searcher = to_search_device(index, config.use_gpu, float16, gpu=device.index or 0)
        if searcher is not index and min(config.k, index.ntotal) > GPU_MAX_K:
            raise ConfigError(
                f"faiss searches at most k={GPU_MAX_K} on a GPU; got k={config.k} "
                "(backend=torch, or use_gpu=no to search on CPU)"
            )
        return searcher, ids, meta, "faiss" + (" (GPU)" if searcher is not index else "")
    if config.use_gpu == "no":
        device = torch.device("cpu")
    elif config.use_gpu == "yes" and device.type != "cuda":
        raise ConfigError("use_gpu=yes but the search device is not a CUDA device")
    index_file, ids, meta = read_index_files(config.index)
    dtype = search_dtype(config.precision, device)
    searcher = TorchFlatIndex.from_file(index_file, device, dtype, query_block=config.search_batch_size)
    if searcher.ntotal != len(ids) or searcher.d != meta["dim"]:
        raise SchemaError(
            f"{config.index}: inconsistent index: {searcher.ntotal} vectors of size {searcher.d}, "
            f"{len(ids)} ids, meta says dim {meta['dim']}"
        )
    return searcher, ids, meta, f"torch ({str(dtype).removeprefix('torch.')} on {device})"


def _check_dim(model_dim: int, index_dim: int, config: Config) -> None:
    if model_dim != index_dim:
        raise SchemaError(
            f"{config.model} makes {model_dim}-d query vectors but the index {config.index} holds "
            f"{index_dim}-d vectors: search with the model that encoded the corpus"
        )


def _search_share(config: Config, ctx: distributed.DistContext):
    """Open the index, encode this rank's share of the queries and search it.

    Returns (query ids of all queries, index ids, meta, backend, ntotal, blocks) where blocks
    iterates (first query row among all queries, scores [b, k'], rows [b, k']) over the share.
    """
    from lead_core.encode import encode_texts, load_for_inference, resolve_device

    queries = read_table(config.queries, QUERIES)
    if queries.num_rows == 0:
        raise SchemaError(f"{config.queries}: no queries")
    device = resolve_device(config.device)
    searcher, doc_ids, meta, backend = open_index(config, device)
    if ctx.is_main and meta.get("model") and Path(meta["model"]).resolve() != Path(config.model).resolve():
        log.warning(
            "search: the index %s was encoded with %s, the queries are encoded with %s; "
            "scores are only meaningful when both are the same model",
            config.index,
            meta["model"],
            config.model,
        )
    model = load_for_inference(config.model, device, architectures=("de",), stage="search")
    _check_dim(getattr(model, "output_size", searcher.d), searcher.d, config)  # before encoding
    query_ids = queries.column("query_id").to_pylist()
    first, stop = distributed.share(len(query_ids), ctx.rank, ctx.world_size)
    vectors = encode_texts(
        model,
        queries.column("text").to_pylist()[first:stop],
        is_query=True,
        batch_size=config.batch_size,
        max_length=config.max_length,
        device=device,
    )
    _check_dim(vectors.shape[1], searcher.d, config)
    blocks = (
        (first + start, scores, rows)
        for start, scores, rows in search_batches(
            searcher, vectors, config.k, config.search_batch_size, progress=ctx.is_main
        )
    )
    return query_ids, doc_ids, meta, backend, searcher.ntotal, blocks


def run(config: Config) -> dict[str, Any]:
    if config.k < 1:
        raise ConfigError(f"k must be at least 1, got {config.k}")
    ctx = distributed.setup()
    try:
        if not ctx.is_main:  # search a share; rank 0 writes every rank's results
            *_, blocks = _search_share(config, ctx)
            distributed.gather_objects(list(blocks))
            return {"rank": ctx.rank}
        outputs = atomic_outputs(config.out_run, config.out_trec)
        with stage_run("search", to_dict(config)) as tracker, outputs as (out_run, out_trec):
            query_ids, doc_ids, _, backend, ntotal, blocks = _search_share(config, ctx)
            if ctx.enabled:  # every rank's blocks, in query order (shares are contiguous, rank-major)
                blocks = [block for share in distributed.gather_objects(list(blocks)) for block in share]
            doc_id_array = pa.array(doc_ids, pa.string())
            tables = []
            with open_writer(out_run, RUN, to_dict(config)) as writer:
                for start, scores, rows in blocks:
                    table = run_table(query_ids[start : start + len(rows)], doc_id_array, scores, rows)
                    writer.write(table)
                    if config.out_trec:
                        tables.append(table)
            if config.out_trec:
                write_trec_run(pa.concat_tables(tables), out_trec, tag=config.tag)
            summary = {"queries": len(query_ids), "rows": writer.num_rows, "k": min(config.k, ntotal)}
            tracker.log_metrics(summary)
            log.info(
                "searched %d queries, top-%d of %d vectors with %s on %d process(es) -> %s",
                len(query_ids),
                summary["k"],
                ntotal,
                backend,
                ctx.world_size,
                config.out_run,
            )
            return summary
    finally:
        ctx.close()
