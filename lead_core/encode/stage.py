"""`lead encode`: a CORPUS or QUERIES artifact -> an embeddings directory (see `store`).

Speed (issue 4: ≥ 25,000 passages/s for a 12-layer 768-d encoder on one H100):
  - texts are sorted by tokenized length inside each shard, so a batch pads to similar lengths
    (MS MARCO passages: mean ~75 tokens, max 160 – fixed-length padding would do twice the work);
    the output rows are put back in input order before writing;
  - bf16 autocast on GPU, fp32 on CPU; large batches (default 512);
  - several GPUs: under torchrun each rank encodes every world_size-th shard into one shared
    temporary directory; rank 0 writes meta.json and renames the directory into place.
Memory is bounded by one shard (default 100,000 texts), never the whole corpus.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from lead_core import distributed
from lead_core.artifacts import atomic_path, check_writable
from lead_core.config import ConfigError, to_dict
from lead_core.data.schema import CORPUS, QUERIES, SchemaError, iter_batches, read_metadata
from lead_core.data.text import passage_texts
from lead_core.encode.runtime import (
    Precision,
    inference_precision,
    load_for_inference,
    max_length_override,
    resolve_device,
)
from lead_core.encode.store import DTYPES, read_meta, shard_name, write_meta, write_shard
from lead_core.models.base import RetrievalModel
from lead_core.tracking import StageTracker, stage_run

log = logging.getLogger(__name__)


@dataclass
class Config:
    model: str = field(metadata={"help": "saved dual-encoder (de) model directory"})
    input: str = field(metadata={"help": "CORPUS or QUERIES Parquet artifact"})
    out: str = field(metadata={"help": "embeddings directory to write (Parquet shards + meta.json)"})
    is_query: bool | None = field(
        default=None, metadata={"help": "encode as queries (default: true for QUERIES, false for CORPUS)"}
    )
    batch_size: int = field(default=512, metadata={"help": "texts per encoder batch"})
    max_length: int | None = field(default=None, metadata={"help": "token limit (default: the model's)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, ..."})
    shard_size: int = field(default=100_000, metadata={"help": "rows per output shard (and per length sort)"})
    dtype: Literal["float16", "float32"] = field(
        default="float16", metadata={"help": "stored vector precision"}
    )
    precision: Precision = field(
        default="auto",
        metadata={"help": "encoder arithmetic: auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16"},
    )


def token_lengths(model: RetrievalModel, texts: Sequence[str], max_length: int) -> np.ndarray:
    """[n] number of tokens of each text after truncation to `max_length` (special tokens included)."""
    lengths = np.empty(len(texts), dtype=np.int64)
    step = 8192  # bounds the token lists held at once
    for start in range(0, len(texts), step):
        ids = model.tokenizer(
            list(texts[start : start + step]),
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths[start : start + len(ids)] = [len(x) for x in ids]
    return lengths


def encode_texts(
    model: RetrievalModel,
    texts: Sequence[str],
    is_query: bool,
    batch_size: int = 512,
    max_length: int | None = None,
    device: torch.device | None = None,
    progress: tqdm | None = None,
    precision: Precision = "auto",
) -> np.ndarray:
    """[n, output_size] float32 embeddings of `texts`, row i for texts[i].

    Batches are formed over the texts sorted by tokenized length (longest first, so an
    out-of-memory shows at once), then rows are put back in input order.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    device = device or model.device
    with max_length_override(model, is_query, max_length):
        limit = model.config.query_max_length if is_query else model.config.passage_max_length
        order = np.argsort(-token_lengths(model, texts, limit), kind="stable")
        out: np.ndarray | None = None
        with torch.inference_mode(), inference_precision(device, precision):
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                vectors = model.encode([texts[i] for i in rows], is_query=is_query).float().cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[rows] = vectors
                if progress is not None:
                    progress.update(len(rows))
    if out is None:
        return np.empty((0, getattr(model, "output_size", 0)), dtype=np.float32)
    return out


def _input_kind(path: str) -> tuple[Any, str, bool]:
    """(schema, id column, is a queries artifact) of the input, or a clear error."""
    meta = read_metadata(path)
    if meta["schema"] == CORPUS.name:
        return CORPUS, "doc_id", False
    if meta["schema"] == QUERIES.name:
        return QUERIES, "query_id", True
    raise SchemaError(
        f"{path}: encode reads a 'corpus' or 'queries' artifact, found {meta['schema'] or 'no lead metadata'}"
    )


def encode_shards(
    model: RetrievalModel,
    input_path: str,
    directory: Path,
    config: Config,
    is_query: bool,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> int:
    """Encode the input's shards c with c % world == rank into `directory`; returns the shard count."""
    schema, id_column, _ = _input_kind(input_path)
    total = read_metadata(input_path)["num_rows"]
    columns = [id_column, "title", "text"] if schema is CORPUS else [id_column, "text"]
    progress = tqdm(total=total, desc=f"encode[{rank}]" if world > 1 else "encode", unit="text", disable=None)
    num_shards = 0
    for chunk, batch in enumerate(
        iter_batches(input_path, schema, batch_size=config.shard_size, columns=columns)
    ):
        num_shards += 1
        if chunk % world != rank:
            continue
        ids = batch.column(id_column).to_pylist()
        if schema is CORPUS:
            texts = passage_texts(batch.column("title").to_pylist(), batch.column("text").to_pylist())
        else:
            texts = batch.column("text").to_pylist()
        vectors = encode_texts(
            model, texts, is_query, config.batch_size, config.max_length, device, progress, config.precision
        )
        write_shard(directory / shard_name(chunk), ids, vectors, config.dtype, to_dict(config))
    progress.close()
    return num_shards


def finalize(directory: Path, num_shards: int, dtype: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check that shards 0..num_shards-1 are all there and write meta.json; returns it."""
    shards = [shard_name(c) for c in range(num_shards)]
    missing = [s for s in shards if not (directory / s).is_file()]
    if missing:
        raise RuntimeError(f"{directory}: shard(s) {missing[:3]} were not written")
    rows = [read_metadata(directory / s)["num_rows"] for s in shards]
    dim = pq.read_schema(directory / shards[0]).field("vector").type.list_size
    write_meta(directory, dim, dtype, sum(rows), shards, config)
    return read_meta(directory)


def run(config: Config) -> dict[str, Any]:
    if config.shard_size < 1:
        raise ConfigError(f"shard_size must be positive, got {config.shard_size}")
    if config.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}")
    _, _, is_queries = _input_kind(config.input)
    is_query = is_queries if config.is_query is None else config.is_query
    if read_metadata(config.input)["num_rows"] == 0:
        raise SchemaError(f"{config.input}: no rows to encode")
    check_writable(config.out)  # before loading the model and encoding
    ctx = distributed.setup()
    rank, world = ctx.rank, ctx.world_size
    try:
        # One tracked run per encode, not one per rank.
        tracking = (
            stage_run("encode", to_dict(config)) if ctx.is_main else contextlib.nullcontext(StageTracker())
        )
        with tracking as tracker:
            device = resolve_device(config.device)
            model = load_for_inference(config.model, device, architectures=("de",), stage="encode")
            out = Path(config.out)
            meta: dict[str, Any] = {}
            if ctx.is_main:
                with atomic_path(out) as tmp:
                    tmp.mkdir()
                    distributed.broadcast_object(str(tmp))
                    num_shards = encode_shards(
                        model, config.input, tmp, config, is_query, device, rank, world
                    )
                    ctx.barrier()
                    meta = finalize(tmp, num_shards, config.dtype, to_dict(config))
                ctx.barrier()
                summary = {
                    "rows": meta["num_rows"],
                    "dim": meta["dim"],
                    "shards": len(meta["shards"]),
                    "processes": world,
                }
                tracker.log_metrics(summary)
                log.info(
                    "encoded %d texts into %d-d vectors (%d shards, %d process(es)) -> %s",
                    *summary.values(),
                    out,
                )
                return summary
            tmp = Path(distributed.broadcast_object(None))
            encode_shards(model, config.input, tmp, config, is_query, device, rank, world)
            ctx.barrier()
            ctx.barrier()
            return {"rank": rank}
    finally:
        ctx.close()
