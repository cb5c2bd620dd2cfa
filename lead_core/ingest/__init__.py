"""`lead ingest`: one split of an MS MARCO or BEIR dataset as corpus/queries/qrels Parquet (see `stage`;
the readers, schema and I/O are `lead_core.data`)."""

from lead_core.ingest.stage import Config, run

__all__ = ["Config", "run"]
