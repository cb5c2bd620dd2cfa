"""Training groups for phase 1 (paper §4.1): each judged query's positives and n negatives.

Negatives are either the query's first n BM25 hits that are not judged relevant, or n documents
drawn uniformly at random from the corpus, never one judged relevant to the query. Random draws
are seeded per query (from the seed and the query id), so a query's negatives do not depend on
batch sizes or on which other queries are in the split.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lead_core.config import ConfigError
from lead_core.data.schema import GROUPS, SchemaError, validate_table


class Judgements:
    """Per query: positive doc ids (grade >= `positive_relevance`) and all judged-relevant ids (grade > 0)."""

    def __init__(self, qrels: pa.Table, positive_relevance: int = 1):
        if positive_relevance < 1:
            raise ConfigError(f"positive_relevance must be >= 1, got {positive_relevance}")
        relevant = qrels.filter(pc.greater(qrels.column("relevance"), 0))
        self.positives: dict[str, list[str]] = {}
        self.relevant: dict[str, set[str]] = {}
        for q, d, r in zip(
            relevant.column("query_id").to_pylist(),
            relevant.column("doc_id").to_pylist(),
            relevant.column("relevance").to_pylist(),
        ):
            self.relevant.setdefault(q, set()).add(d)
            if r >= positive_relevance:
                positives = self.positives.setdefault(q, [])
                if d not in positives:
                    positives.append(d)

    def check_in_corpus(self, doc_ids: pa.Array, where: str) -> None:
        """Fail if a positive is not a corpus document (training could not look its text up)."""
        all_positives = pa.array([d for ds in self.positives.values() for d in ds], pa.string())
        missing = pc.invert(pc.is_in(all_positives, value_set=doc_ids))
        count = pc.sum(missing).as_py() or 0
        if count:
            example = all_positives.filter(missing)[0].as_py()
            raise SchemaError(
                f"{where}: {count} judged-relevant doc id(s) are not in the corpus (e.g. {example!r}); "
                "ingest with the option that drops qrels outside the corpus, or use the matching corpus"
            )


def bm25_negatives(ranked_doc_ids: Iterable[str], relevant: set[str], n: int) -> list[str]:
    """The first `n` ids of a ranking (best first) that are not in `relevant`."""
    out: list[str] = []
    for doc_id in ranked_doc_ids:
        if doc_id not in relevant:
            out.append(doc_id)
            if len(out) == n:
                break
    return out


def query_rng(seed: int, query_id: str) -> np.random.Generator:
    """A generator seeded by (seed, query id): the same draws for a query whatever else is in the batch."""
    return np.random.default_rng([seed, zlib.crc32(query_id.encode("utf-8"))])


def random_negatives(doc_ids: pa.Array, relevant: set[str], n: int, rng: np.random.Generator) -> list[str]:
    """`n` distinct documents drawn uniformly from `doc_ids`, none of them in `relevant`.

    Rejection sampling over positions: O(n) per query even for an 8.8M-passage corpus.
    """
    available = len(doc_ids) - len(relevant)
    if n > available:
        raise ConfigError(
            f"cannot draw {n} random negatives: the corpus has only {available} documents "
            "not judged relevant to the query"
        )
    chosen: list[str] = []
    seen: set[int] = set()
    while len(chosen) < n:
        draw = rng.integers(0, len(doc_ids), size=2 * (n - len(chosen)) + 8)
        for pos, doc_id in zip(draw.tolist(), doc_ids.take(pa.array(draw)).to_pylist()):
            if pos in seen or doc_id in relevant:
                continue
            seen.add(pos)
            chosen.append(doc_id)
            if len(chosen) == n:
                break
    return chosen


def groups_table(
    query_ids: list[str],
    positives: Mapping[str, list[str]],
    negatives: Mapping[str, list[str]],
    source: str,
) -> pa.Table:
    """A GROUPS table, one row per query id in `query_ids` (order kept)."""
    table = pa.table(
        {
            "query_id": pa.array(query_ids, pa.string()),
            "positive_ids": pa.array([positives[q] for q in query_ids], pa.list_(pa.string())),
            "negative_ids": pa.array([negatives[q] for q in query_ids], pa.list_(pa.string())),
            "negative_source": pa.array([source] * len(query_ids), pa.string()),
        }
    )
    return validate_table(table, GROUPS, where="training groups")
