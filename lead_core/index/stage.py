"""`lead index`: an exact inner-product faiss index (IndexFlatIP) over an embeddings directory.

The index directory holds
    index.faiss    faiss IndexFlatIP over the vectors (as float32; row i = ids[i])
    ids.parquet    schema.IDS: the row ids in index order
    meta.json      dim, number of vectors, the embeddings' dtype, and the config
and is written atomically. Where the index is searched (CPU or GPU, float16 on the GPU when
the embeddings were float16) is the search stage's choice: a flat index is the same bytes either way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from lead_core.artifacts import atomic_path, check_writable
from lead_core.config import to_dict
from lead_core.data.schema import IDS, SchemaError, open_writer, read_table
from lead_core.encode.store import iter_embeddings, read_meta
from lead_core.errors import require
from lead_core.tracking import stage_run

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
META_FILE = "meta.json"
FORMAT = "lead.faiss-index"


@dataclass
class Config:
    embeddings: str = field(metadata={"help": "embeddings directory written by `lead encode` (the corpus)"})
    out: str = field(metadata={"help": "index directory to write (index.faiss, ids.parquet, meta.json)"})


def _faiss():
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines list CPU probes
    return require("faiss", "faiss-cpu", "a faiss index", "(on a GPU machine: the faiss-gpu extra)")


def build_index(
    embeddings: str | Path, out: str | Path, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Stream the embeddings' shards into an IndexFlatIP and write the index directory; return its meta."""
    faiss = _faiss()
    emb_meta = read_meta(embeddings)
    if emb_meta["num_rows"] == 0:
        raise ValueError(f"{embeddings}: no embeddings to index")
    index = faiss.IndexFlatIP(emb_meta["dim"])
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        with open_writer(tmp / IDS_FILE, IDS, config) as ids_writer:
            for ids, vectors in iter_embeddings(embeddings):
                index.add(vectors.astype("float32", copy=False))
                ids_writer.write(pa.table({"id": pa.array(ids, pa.string())}))
        if ids_writer.num_rows != index.ntotal:  # pragma: no cover - guarded by iter_embeddings
            raise SchemaError(f"{embeddings}: {ids_writer.num_rows} ids for {index.ntotal} vectors")
        faiss.write_index(index, str(tmp / INDEX_FILE))
        meta = {
            "format": FORMAT,
            "index_type": "IndexFlatIP",
            "dim": emb_meta["dim"],
            "num_vectors": int(index.ntotal),
            "embeddings_dtype": emb_meta["dtype"],
            "embeddings": str(embeddings),
            "model": emb_meta["config"].get("model"),  # the encoder, for search's sanity check
            "config": dict(config or {}),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def read_index_files(directory: str | Path) -> tuple[Path, list[str], dict[str, Any]]:
    """(path of index.faiss, ids list, meta) of an index directory, checked without faiss."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such index directory")
    meta_path = directory / META_FILE
    if not meta_path.is_file() or not (directory / INDEX_FILE).is_file():
        raise SchemaError(
            f"{directory}: not an index directory (needs {INDEX_FILE} and {META_FILE}); build one with `lead index`"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise SchemaError(f"{meta_path}: expected format {FORMAT!r}, found {meta.get('format')!r}")
    ids = read_table(directory / IDS_FILE, IDS).column("id").to_pylist()
    if len(ids) != meta["num_vectors"]:
        raise SchemaError(
            f"{directory}: inconsistent index: {len(ids)} ids, meta says {meta['num_vectors']} vectors"
        )
    return directory / INDEX_FILE, ids, meta


def load_index(directory: str | Path):
    """(faiss index, ids list, meta) of an index directory, checked for consistency."""
    faiss = _faiss()
    index_file, ids, meta = read_index_files(directory)
    index = faiss.read_index(str(index_file))
    if len(ids) != index.ntotal or index.d != meta["dim"]:
        raise SchemaError(
            f"{directory}: inconsistent index: {index.ntotal} vectors of size {index.d}, "
            f"{len(ids)} ids, meta says dim {meta['dim']}"
        )
    return index, ids, meta


def run(config: Config) -> dict[str, Any]:
    check_writable(config.out)
    with stage_run("index", to_dict(config)) as tracker:
        meta = build_index(config.embeddings, config.out, to_dict(config))
        summary = {"num_vectors": meta["num_vectors"], "dim": meta["dim"]}
        tracker.log_metrics(summary)
        log.info("indexed %d vectors of size %d into %s", meta["num_vectors"], meta["dim"], config.out)
        return summary
