"""Fixtures of the stage tests: saved tiny models and small hand-made artifacts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from lead_core.data.schema import CORPUS, QUERIES, write_table
from tests.stages.samples import PASSAGES, QUERY_TEXTS


def _save(kind: str, backbone: Path, path: Path) -> Path:
    from lead_core.models import ModelConfig, build_model

    torch.manual_seed(0)  # the CE head is drawn from the global RNG
    build_model(ModelConfig(kind, str(backbone), passage_max_length=48)).save(path)
    return path


@pytest.fixture(scope="session")
def de_model(tiny_bert, tmp_path_factory) -> Path:
    """A saved tiny dual encoder (32-d)."""
    return _save("de", tiny_bert, tmp_path_factory.mktemp("models") / "de")


@pytest.fixture(scope="session")
def de_model_48(tiny_mpnet, tmp_path_factory) -> Path:
    """A saved tiny dual encoder over the MPNet backbone (48-d): a dimension mismatch for `de_model`."""
    return _save("de", tiny_mpnet, tmp_path_factory.mktemp("models") / "de48")


@pytest.fixture(scope="session")
def ce_model(tiny_bert, tmp_path_factory) -> Path:
    return _save("ce", tiny_bert, tmp_path_factory.mktemp("models") / "ce")


@pytest.fixture(scope="session")
def cb_model(tiny_bert, tmp_path_factory) -> Path:
    return _save("cb", tiny_bert, tmp_path_factory.mktemp("models") / "cb")


@pytest.fixture()
def corpus_file(tmp_path) -> Path:
    ids, titles, texts = zip(*PASSAGES)
    table = pa.table({"doc_id": list(ids), "title": list(titles), "text": list(texts)})
    return write_table(table, tmp_path / "corpus.parquet", CORPUS)


@pytest.fixture()
def queries_file(tmp_path) -> Path:
    ids, texts = zip(*QUERY_TEXTS)
    return write_table(
        pa.table({"query_id": list(ids), "text": list(texts)}), tmp_path / "queries.parquet", QUERIES
    )
