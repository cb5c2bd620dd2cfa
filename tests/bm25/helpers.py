"""Corpus / queries / qrels artifacts of the real datasets, ingested once per test session."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from lead_core import ingest

_WORKDIR = Path(tempfile.mkdtemp(prefix="lead-bm25-tests-"))
# Shared by every test of the session (functools.cache below), so removed when the session ends.
atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)


def _paths(out: Path) -> dict[str, Path]:
    return {name: out / f"{name}.parquet" for name in ("corpus", "queries", "qrels")}


@functools.cache
def scifact(datasets: Path, split: str = "test") -> dict[str, Path]:
    """SciFact corpus, the split's judged queries and its qrels (`lead ingest --layout beir`)."""
    out = _WORKDIR / f"scifact-{split}"
    ingest.run(
        ingest.Config(source=str(Path(datasets) / "scifact"), layout="beir", split=split, out=str(out))
    )
    return _paths(out)


@functools.cache
def dl_pools(datasets: Path, year: str = "dl19") -> dict[str, Path]:
    """The pooled MS MARCO passages, a TREC DL year's queries and its qrels inside the pool."""
    out = _WORKDIR / f"dl-{year}"
    ingest.run(
        ingest.Config(
            source=str(Path(datasets) / "msmarco-dl19-dl20-pools"),
            layout="msmarco",
            split=year,
            out=str(out),
            drop_unknown_qrels=True,
        )
    )
    return _paths(out)


_BM25_CACHE: dict[tuple, dict[str, Path]] = {}

# The settings TREC DL runs use in these tests (and so share one cached run): grade >= 2 is positive.
DL_SETTINGS = {"positive_relevance": 2}


def bm25(paths: dict[str, Path], **overrides) -> dict[str, Path]:
    """Run `lead bm25` on ingested `paths` (run, TREC run and groups); cached by its arguments."""
    from lead_core import bm25 as stage

    key = (paths["corpus"], tuple(sorted(overrides.items())))
    if key not in _BM25_CACHE:
        out = Path(tempfile.mkdtemp(dir=_WORKDIR, prefix="bm25-"))
        outputs = {"run": out / "run.parquet", "trec": out / "run.trec", "groups": out / "groups.parquet"}
        config = stage.Config(
            corpus=str(paths["corpus"]),
            queries=str(paths["queries"]),
            qrels=str(paths["qrels"]),
            out_run=str(outputs["run"]),
            out_trec=str(outputs["trec"]),
            out_groups=str(outputs["groups"]),
            **overrides,
        )
        stage.run(config)
        _BM25_CACHE[key] = outputs
    return _BM25_CACHE[key]
