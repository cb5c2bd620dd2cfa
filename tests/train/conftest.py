"""A small learnable training set and saved tiny teachers for the trainer tests."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from lead_core.data.schema import CORPUS, GROUPS, QUERIES, write_table

# Topic words that the MiniLM WordPiece vocabulary (the tiny backbones' tokenizer) keeps whole.
TOPICS = (
    "cancer heart virus brain blood gene protein drug dose cell mice infection disease risk "
    "treatment expression patients study human level"
).split()


@dataclass
class ToyData:
    groups: Path
    corpus: Path
    queries: Path
    num_queries: int


def write_toy_data(folder: Path, num_queries: int = 16, negatives: int = 6, seed: int = 0) -> ToyData:
    """Query i asks about topic i; its positive repeats that topic word; negatives are other topics.

    Learnable: a model only has to match the query's topic word in the passage.
    """
    rng = random.Random(seed)
    topics = TOPICS[:num_queries]
    folder.mkdir(parents=True, exist_ok=True)
    doc_ids = [f"d{i}" for i in range(len(topics))]
    corpus = pa.table(
        {
            "doc_id": doc_ids,
            "title": [f"{t}" for t in topics],
            "text": [f"{t} results of the {t} study with {t} data" for t in topics],
        }
    )
    queries = pa.table(
        {"query_id": [f"q{i}" for i in range(len(topics))], "text": [f"what is {t}" for t in topics]}
    )
    groups = pa.table(
        {
            "query_id": [f"q{i}" for i in range(len(topics))],
            "positive_ids": [[f"d{i}"] for i in range(len(topics))],
            "negative_ids": [
                rng.sample([d for d in doc_ids if d != f"d{i}"], negatives) for i in range(len(topics))
            ],
            "negative_source": ["random"] * len(topics),
        }
    )
    paths = ToyData(
        folder / "groups.parquet", folder / "corpus.parquet", folder / "queries.parquet", len(topics)
    )
    write_table(corpus, paths.corpus, CORPUS)
    write_table(queries, paths.queries, QUERIES)
    write_table(groups, paths.groups, GROUPS)
    return paths


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> ToyData:
    return write_toy_data(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def cb_teacher(tmp_path_factory, tiny_mpnet) -> Path:
    """A saved 6-layer ColBERT over the tiny MPNet backbone (MPNet tokenizer)."""
    from lead_core.models import ModelConfig, build_model

    path = tmp_path_factory.mktemp("teachers") / "cb"
    build_model(ModelConfig("cb", str(tiny_mpnet), query_max_length=8, passage_max_length=16)).save(path)
    return path


@pytest.fixture(scope="session")
def ce_teacher(tmp_path_factory, tiny_mpnet) -> Path:
    """A saved 6-layer cross-encoder over the tiny MPNet backbone (head seeded for determinism)."""
    import torch

    from lead_core.models import ModelConfig, build_model

    path = tmp_path_factory.mktemp("teachers") / "ce"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        build_model(ModelConfig("ce", str(tiny_mpnet), query_max_length=8, passage_max_length=16)).save(path)
    return path


@pytest.fixture(scope="session")
def de_bert_teacher(tmp_path_factory, tiny_bert) -> Path:
    """A saved 4-layer DE over tiny BERT: the same tokenizer as a tiny-BERT student (for FD)."""
    from lead_core.models import ModelConfig, build_model

    path = tmp_path_factory.mktemp("teachers") / "de-bert"
    build_model(ModelConfig("de", str(tiny_bert), query_max_length=8, passage_max_length=16)).save(path)
    return path


def without_dropout(backbone: Path, folder: Path) -> Path:
    """A copy of a backbone folder with dropout off: a training step is then a pure function of
    the weights and the batch, so a test can recompute it."""
    import json
    import shutil

    shutil.copytree(backbone, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def first_positives(num_queries: int, group_size: int):
    """bool [Q, Q*G]: query i's positive is passage i*G (the batch layout of lead_core.train.data;
    also the union of the ranks' batches, which are laid out rank after rank)."""
    import torch

    mask = torch.zeros(num_queries, num_queries * group_size, dtype=torch.bool)
    mask[torch.arange(num_queries), torch.arange(num_queries) * group_size] = True
    return mask


def base_config(toy: ToyData, out: Path, **overrides):
    """A Config over the toy data with tiny lengths; `overrides` set any field."""
    from lead_core.train import Config

    values = dict(
        groups=str(toy.groups),
        corpus=str(toy.corpus),
        queries=str(toy.queries),
        out=str(out),
        model="",
        batch_size=4,
        num_negatives=3,
        query_max_length=8,
        passage_max_length=16,
        max_steps=2,
        progress=False,
        num_workers=1,
    )
    values.update(overrides)
    return Config(**values)


def state_of(path: Path) -> dict:
    """The weights of a saved lead model directory, as a state dict."""
    from lead_core.models import load_model

    return load_model(path).state_dict()


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
