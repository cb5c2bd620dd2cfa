"""The embeddings artifact: a directory of EMBEDDINGS Parquet shards plus `meta.json`.

    <dir>/meta.json            {"format", "version", "dim", "dtype", "num_rows", "shards", "config"}
    <dir>/part-00000.parquet   rows of chunk 0 (ids and [dim] vectors), in input order
    <dir>/part-00001.parquet   ...

Shards are numbered by input chunk, so reading them in name order gives the input order back
(also when several GPU ranks wrote them). Each shard is a `schema.EMBEDDINGS` file written with
`schema.open_writer`; the directory appears at its final path only when complete (`atomic_path`).
An 8.8M x 768 float16 corpus is 13.5 GB of vectors: `iter_embeddings` streams it shard by shard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lead_core.data.schema import EMBEDDINGS, SchemaError, embeddings_schema, open_writer, read_table

FORMAT = "lead.embeddings"
FORMAT_VERSION = 1
META_FILE = "meta.json"
DTYPES = {"float16": (np.float16, pa.float16()), "float32": (np.float32, pa.float32())}
# Rows per Parquet row group inside a shard (bounds the Arrow copy made while writing).
_ROW_GROUP = 65536


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def vectors_to_arrow(vectors: np.ndarray, dtype: str) -> pa.FixedSizeListArray:
    """[n, d] array -> Arrow fixed-size-list array of `dtype` ("float16" or "float32")."""
    np_dtype, pa_dtype = DTYPES[dtype]
    flat = np.ascontiguousarray(vectors, dtype=np_dtype).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa_dtype), vectors.shape[1])


def arrow_to_vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow fixed-size-list column -> [n, d] numpy array (float16 or float32, as stored)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = array.type.list_size
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, dim)


def write_shard(
    path: str | Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    dtype: str = "float16",
    config: Mapping[str, Any] | None = None,
) -> int:
    """Write one EMBEDDINGS shard (ids[i] <-> vectors[i], vectors [n, d]); returns n."""
    if len(ids) != len(vectors):
        raise ValueError(f"{path}: {len(ids)} ids but {len(vectors)} vectors")
    if vectors.ndim != 2:
        raise ValueError(f"{path}: vectors must be [n, d], got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise ValueError(f"{path}: the vector of id {ids[bad]!r} has non-finite values")
    arrow = embeddings_schema(vectors.shape[1], DTYPES[dtype][1])
    with open_writer(path, EMBEDDINGS, config, arrow=arrow) as writer:
        for start in range(0, len(ids), _ROW_GROUP):
            stop = start + _ROW_GROUP
            writer.write(
                pa.table(
                    {
                        "id": pa.array(ids[start:stop], pa.string()),
                        "vector": vectors_to_arrow(vectors[start:stop], dtype),
                    },
                    schema=arrow,
                )
            )
    return len(ids)


def write_meta(
    directory: str | Path,
    dim: int,
    dtype: str,
    num_rows: int,
    shards: list[str],
    config: Mapping[str, Any] | None,
) -> None:
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dim": dim,
        "dtype": dtype,
        "num_rows": num_rows,
        "shards": shards,
        "config": dict(config or {}),
    }
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The embeddings directory's meta.json, checked (format, version, every shard present)."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such embeddings directory")
    meta_path = directory / META_FILE
    if not directory.is_dir() or not meta_path.is_file():
        raise SchemaError(
            f"{directory}: not an embeddings directory (no {META_FILE}); write one with `lead encode`"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise SchemaError(f"{meta_path}: line {err.lineno}: not valid JSON: {err.msg}") from err
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise SchemaError(
            f"{meta_path}: expected format {FORMAT!r} version {FORMAT_VERSION}, "
            f"found {meta.get('format')!r} version {meta.get('version')!r}"
        )
    missing = [s for s in meta["shards"] if not (directory / s).is_file()]
    if missing:
        raise SchemaError(f"{directory}: shard(s) {missing[:3]} listed in {META_FILE} are missing")
    return meta


def iter_embeddings(directory: str | Path) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream (ids, vectors [n_shard, dim]) shard by shard, in input order, checking each shard."""
    directory = Path(directory)
    meta = read_meta(directory)
    seen = 0
    for shard in meta["shards"]:
        path = directory / shard
        table = read_table(path, EMBEDDINGS)
        vectors = arrow_to_vectors(table.column("vector"))
        if vectors.shape[1] != meta["dim"]:
            raise SchemaError(f"{path}: vectors of size {vectors.shape[1]}, {META_FILE} says {meta['dim']}")
        seen += len(vectors)
        yield table.column("id").to_pylist(), vectors
    if seen != meta["num_rows"]:
        raise SchemaError(f"{directory}: the shards hold {seen} rows, {META_FILE} says {meta['num_rows']}")


def read_embeddings(directory: str | Path) -> tuple[list[str], np.ndarray]:
    """All ids and the [n, dim] matrix (dtype as stored) of an embeddings directory, in input order."""
    meta = read_meta(directory)
    matrix = np.empty((meta["num_rows"], meta["dim"]), dtype=DTYPES[meta["dtype"]][0])
    ids: list[str] = []
    for shard_ids, vectors in iter_embeddings(directory):
        if len(ids) + len(vectors) > len(matrix):
            raise SchemaError(
                f"{directory}: the shards hold more rows than {META_FILE} says ({meta['num_rows']})"
            )
        matrix[len(ids) : len(ids) + len(vectors)] = vectors
        ids.extend(shard_ids)
    if len(set(ids)) != len(ids):
        raise SchemaError(f"{directory}: duplicate ids across shards")
    return ids, matrix
