"""Parquet schemas and readers for MS MARCO, BEIR and TREC files (local paths or remote URIs)."""

from lead_core.data.schema import (
    CORPUS,
    EMBEDDINGS,
    GROUPS,
    QRELS,
    QUERIES,
    RUN,
    SCHEMAS,
    ArtifactSchema,
    SchemaError,
    iter_batches,
    open_writer,
    read_metadata,
    read_table,
    validate_table,
    write_table,
)

__all__ = [
    "CORPUS",
    "EMBEDDINGS",
    "GROUPS",
    "QRELS",
    "QUERIES",
    "RUN",
    "SCHEMAS",
    "ArtifactSchema",
    "SchemaError",
    "iter_batches",
    "open_writer",
    "read_metadata",
    "read_table",
    "validate_table",
    "write_table",
]
