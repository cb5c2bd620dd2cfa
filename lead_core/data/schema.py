"""The one schema module: every Parquet artifact of the pipeline is read and written through here.

Each artifact kind has a name, a version and an Arrow schema. Writers validate the table and store
`lead.schema`, `lead.schema_version`, `lead.num_rows` and `lead.config` (the JSON of the config
that made it) in the Parquet key-value metadata; readers check them and fail with a message that
names the file and what was expected. Every data page carries a CRC32 that readers verify, so a
damaged artifact is an error naming it instead of silently different values.

Ids are strings everywhere: MS MARCO pids are numbers, BEIR ids are not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_core.artifacts import atomic_path
from lead_core.errors import UserError

SCHEMA_VERSION = 1


class SchemaError(UserError, ValueError):
    """An artifact does not match its schema. The message names the file and the problem."""


@dataclass(frozen=True)
class ArtifactSchema:
    """A named, versioned Arrow schema and the columns whose values must be unique."""

    name: str
    arrow: pa.Schema
    unique: tuple[str, ...] = ()
    nonempty: tuple[str, ...] = ()  # string columns that may not be empty

    @property
    def columns(self) -> list[str]:
        return self.arrow.names


CORPUS = ArtifactSchema(
    "corpus",
    pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())]),
    unique=("doc_id",),
    nonempty=("doc_id",),
)
QUERIES = ArtifactSchema(
    "queries",
    pa.schema([("query_id", pa.string()), ("text", pa.string())]),
    unique=("query_id",),
    nonempty=("query_id", "text"),
)
QRELS = ArtifactSchema(
    "qrels",
    pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("relevance", pa.int32())]),
    nonempty=("query_id", "doc_id"),
)
# A training group: a query, its positives, and negatives with where they came from
# ("bm25", "random", "mined:<run>", "official-triples", ...).
GROUPS = ArtifactSchema(
    "groups",
    pa.schema(
        [
            ("query_id", pa.string()),
            ("positive_ids", pa.list_(pa.string())),
            ("negative_ids", pa.list_(pa.string())),
            ("negative_source", pa.string()),
        ]
    ),
    unique=("query_id",),
    nonempty=("query_id",),
)
RUN = ArtifactSchema(
    "run",
    pa.schema(
        [("query_id", pa.string()), ("doc_id", pa.string()), ("rank", pa.int32()), ("score", pa.float32())]
    ),
    nonempty=("query_id", "doc_id"),
)
# Embeddings: `vector` is a fixed-size list; its size (the model dimension) varies by model,
# so the schema below is checked up to that size.
EMBEDDINGS = ArtifactSchema(
    "embeddings",
    pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32()))]),
    unique=("id",),
    nonempty=("id",),
)

# A list of distinct ids: the row ids of a faiss index, in index order (row i of the index is
# ids[i]); the empty documents ingest left out of a corpus (skipped_documents.parquet).
IDS = ArtifactSchema("ids", pa.schema([("id", pa.string())]), unique=("id",), nonempty=("id",))

SCHEMAS: dict[str, ArtifactSchema] = {
    s.name: s for s in (CORPUS, QUERIES, QRELS, GROUPS, RUN, EMBEDDINGS, IDS)
}


def embeddings_schema(dim: int, dtype: pa.DataType = pa.float32()) -> pa.Schema:
    """Arrow schema of an embeddings table with `dim`-dimensional vectors of `dtype` (float32 or float16)."""
    return pa.schema([("id", pa.string()), ("vector", pa.list_(dtype, dim))])


def _arrow_schema_for(schema: ArtifactSchema, table_schema: pa.Schema) -> pa.Schema:
    if schema is EMBEDDINGS:
        vec = table_schema.field("vector").type if "vector" in table_schema.names else None
        if vec is not None and pa.types.is_fixed_size_list(vec):
            return embeddings_schema(vec.list_size, vec.value_type)
        return embeddings_schema(0)
    return schema.arrow


def _check_columns(schema: ArtifactSchema, table_schema: pa.Schema, where: str) -> None:
    missing = [c for c in schema.columns if c not in table_schema.names]
    if missing:
        raise SchemaError(
            f"{where}: missing column(s) {missing} for a {schema.name!r} artifact; "
            f"expected {schema.columns}, found {table_schema.names}"
        )
    if schema is EMBEDDINGS:
        vec = table_schema.field("vector").type
        if not (pa.types.is_fixed_size_list(vec) and vec.value_type in (pa.float32(), pa.float16())):
            raise SchemaError(
                f"{where}: column 'vector' must be a fixed-size list of float32 or float16, found {vec}"
            )
        return
    for field in schema.arrow:
        found = table_schema.field(field.name).type
        if found != field.type:
            raise SchemaError(
                f"{where}: column {field.name!r} has type {found}, expected {field.type} "
                f"for a {schema.name!r} artifact"
            )


def validate_table(table: pa.Table, schema: ArtifactSchema, where: str = "<table>") -> pa.Table:
    """Check `table` against `schema` and return it with the schema's column order.

    Casts columns that convert losslessly (e.g. int64 ranks to int32, large_string to string);
    rejects nulls, empty ids and duplicate unique keys, naming the first offending row.
    """
    if schema is not EMBEDDINGS:
        missing = [c for c in schema.columns if c not in table.column_names]
        if missing:
            raise SchemaError(
                f"{where}: missing column(s) {missing} for a {schema.name!r} artifact; "
                f"expected {schema.columns}, found {table.column_names}"
            )
        table = table.select(schema.columns)
        try:
            table = table.cast(schema.arrow, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SchemaError(f"{where}: cannot convert to the {schema.name!r} schema: {err}") from err
    else:
        table = table.select(schema.columns)
    _check_columns(schema, table.schema, where)
    for name in schema.columns:
        nulls = table.column(name).null_count
        if nulls:
            row = pc.index(pc.is_null(table.column(name)), True).as_py()
            raise SchemaError(f"{where}: row {row}: column {name!r} is null ({nulls} null values in all)")
    for name in schema.nonempty:
        empty = pc.equal(pc.utf8_length(table.column(name)), 0)
        if pc.any(empty).as_py():
            row = pc.index(empty, True).as_py()
            raise SchemaError(f"{where}: row {row}: column {name!r} is empty")
    for name in schema.unique:
        col = table.column(name)
        if pc.count_distinct(col).as_py() != len(col):
            counts = pc.value_counts(col)
            dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
            rows = pc.indices_nonzero(pc.equal(col, dup)).to_pylist()[:2]
            raise SchemaError(f"{where}: duplicate {name} {dup!r} at rows {rows}")
    return table


def _metadata(schema: ArtifactSchema, num_rows: int, config: Mapping[str, Any] | None) -> dict[bytes, bytes]:
    return {
        b"lead.schema": schema.name.encode(),
        b"lead.schema_version": str(SCHEMA_VERSION).encode(),
        b"lead.num_rows": str(num_rows).encode(),
        b"lead.config": json.dumps(config or {}, sort_keys=True, default=str).encode(),
    }


def write_table(
    table: pa.Table,
    path: str | Path,
    schema: ArtifactSchema,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Validate `table` and write it to `path` atomically, with the artifact metadata."""
    path = Path(path)
    table = validate_table(table, schema, where=str(path))
    table = table.replace_schema_metadata(_metadata(schema, table.num_rows, config))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
    return path


class ArtifactWriter:
    """Streaming writer for artifacts too large for memory (an 8.8M-passage corpus).

    Each batch is validated; uniqueness is checked by the caller (it needs line numbers). The
    file appears at `path` only when the `with` block exits cleanly.
    """

    def __init__(self, writer: pq.ParquetWriter, schema: ArtifactSchema, where: str, arrow: pa.Schema):
        self._writer = writer
        self._schema = schema
        self._where = where
        self._arrow = arrow
        self.num_rows = 0

    def write(self, batch: pa.Table | pa.RecordBatch) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        table = validate_table(table, self._schema, where=self._where)
        if self._schema is EMBEDDINGS:
            table = table.cast(self._arrow)
        self._writer.write_table(table)
        self.num_rows += table.num_rows


@contextmanager
def open_writer(
    path: str | Path,
    schema: ArtifactSchema,
    config: Mapping[str, Any] | None = None,
    arrow: pa.Schema | None = None,
) -> Iterator[ArtifactWriter]:
    """Context manager yielding an `ArtifactWriter`; the file is renamed into place on success.

    `arrow` overrides the Arrow schema (needed for embeddings, whose vector size varies).
    """
    path = Path(path)
    arrow = arrow or schema.arrow
    with atomic_path(path) as tmp:
        pq_writer = pq.ParquetWriter(
            tmp,
            arrow.with_metadata(_metadata(schema, 0, config)),
            compression="zstd",
            write_page_checksum=True,
        )
        out = ArtifactWriter(pq_writer, schema, str(path), arrow)
        try:
            yield out
            pq_writer.add_key_value_metadata(_metadata(schema, out.num_rows, config))
        finally:
            pq_writer.close()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The artifact metadata of a Parquet file: schema name, version, row count and config."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: no such artifact")
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"{path}: not a readable Parquet file: {err}") from err
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items() if k.startswith(b"lead.")}
    return {
        "schema": kv.get("lead.schema"),
        "schema_version": int(kv["lead.schema_version"]) if "lead.schema_version" in kv else None,
        "num_rows": meta.num_rows,
        "config": json.loads(kv.get("lead.config", "{}")),
    }


def _check_file(path: Path, schema: ArtifactSchema) -> pq.ParquetFile:
    meta = read_metadata(path)
    if meta["schema"] != schema.name:
        raise SchemaError(
            f"{path}: expected a {schema.name!r} artifact, found {meta['schema'] or 'a file without lead metadata'}"
        )
    if meta["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: {schema.name!r} schema version {meta['schema_version']}, this lead_core reads {SCHEMA_VERSION}"
        )
    pf = pq.ParquetFile(path, page_checksum_verification=True)
    _check_columns(schema, pf.schema_arrow, str(path))
    return pf


def read_table(path: str | Path, schema: ArtifactSchema, columns: list[str] | None = None) -> pa.Table:
    """Read and validate a whole artifact (metadata, columns, types, nulls, unique keys)."""
    path = Path(path)
    _check_file(path, schema)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowInvalid) as err:
        raise _corrupt_parquet(path, err) from None
    table = validate_table(table, schema, where=str(path))
    return table.select(columns) if columns else table


def _corrupt_parquet(path: Path, err: Exception) -> SchemaError:
    """A Parquet file whose footer reads but whose data does not (damaged pages, cut short)."""
    return SchemaError(
        f"{path}: the Parquet file is corrupt ({err}); write it again with the stage that made it"
    )


def iter_batches(
    path: str | Path, schema: ArtifactSchema, batch_size: int = 65536, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream an artifact in record batches (metadata and column types checked up front)."""
    path = Path(path)
    pf = _check_file(path, schema)
    try:
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)
    except (OSError, pa.ArrowInvalid) as err:
        raise _corrupt_parquet(path, err) from None
