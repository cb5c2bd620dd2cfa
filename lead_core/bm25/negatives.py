"""Training groups for phase 1 (paper §4.1): each judged query's positives and n negatives.

Negatives are the query's first n BM25 hits that are not judged relevant, n documents drawn
uniformly at random from the corpus, never one judged relevant to the query, or the first n
negatives of MS MARCO's official training triples (`triples_groups`). Random draws
are seeded per query (from the seed and the query id), so a query's negatives do not depend on
batch sizes or on which other queries are in the split.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from lead_core.config import ConfigError
from lead_core.data.ids import IdHashes, hash_ids, sorted_contains
from lead_core.data.msmarco import iter_qidpidtriples
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


# ---------------------------------------------------------------------------------------------
# Official negatives: MS MARCO's training triples (qidpidtriples), streamed.

# Multiplier that folds a query's position into a document hash: key = doc_hash + qidx * _QUERY_MIX
# (mod 2**64) is one uint64 per (query, document) pair, so per-query sets of ids are one sorted array.
_QUERY_MIX = np.uint64(0x9E3779B97F4A7C15)
# negative_source of the groups (the name `lead ingest --official-groups` gives the same negatives)
TRIPLES_SOURCE = "official-triples"


def _pair_keys(query_positions: np.ndarray, doc_hashes: np.ndarray) -> np.ndarray:
    """uint64 key per (query position, document hash) pair, shape [len(doc_hashes)]."""
    with np.errstate(over="ignore"):
        return doc_hashes + query_positions.astype(np.uint64) * _QUERY_MIX


def _rank_in_query(query_positions: np.ndarray) -> np.ndarray:
    """0-based rank of each row among the rows of its query, in row order. Shape [len(query_positions)]."""
    order = np.argsort(query_positions, kind="stable")
    grouped = query_positions[order]
    new_group = np.r_[True, grouped[1:] != grouped[:-1]]
    starts = np.flatnonzero(new_group)
    rank_sorted = np.arange(len(grouped)) - np.repeat(starts, np.diff(np.r_[starts, len(grouped)]))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


@dataclass
class TriplesGroups:
    """Groups built from official triples, and what the file held besides."""

    groups: pa.Table  # GROUPS, negative_source TRIPLES_SOURCE
    lines: int  # triples read
    unknown_query_lines: int  # triples of queries not in the split (skipped)
    unjudged_positive_lines: int  # triples whose positive the qrels do not judge relevant to the query
    judged_queries_without_triples: int  # queries with positives but no usable negative in the file


def triples_groups(
    path: str,
    query_ids: pa.Array,
    corpus_ids: IdHashes,
    judgements: Judgements,
    n: int,
    batch_size: int = 1_000_000,
) -> TriplesGroups:
    """Phase-1 groups from MS MARCO's ``qidpidtriples`` file (paper §4.1: the official BM25 negatives).

    One group per query of `query_ids` (in that order) that has positives and at least one negative:
    positives from the qrels (grade >= positive_relevance, like the bm25/random groups: the
    triples' positive column is the same qrels, so it is only checked and counted), negatives the
    query's first `n` distinct negative pids in file order that the qrels do not judge relevant
    (file order: deterministic and streamable; training samples its per-step negatives from this
    pool with its own seed). Triples of queries outside the split are skipped and counted (a split
    may be a subset of the file's queries); a pid that is not a corpus document is an error naming
    the file and line (the file belongs to another corpus).

    Streams the file in batches of `batch_size` lines with vectorized per-batch work; memory holds
    one batch plus at most n accepted negatives per query (8-byte keys and the pid strings).
    """
    num_queries = len(query_ids)
    query_hashes = hash_ids(query_ids)
    query_order = np.argsort(query_hashes)
    sorted_query_hashes = query_hashes[query_order]
    position_of = {q: i for i, q in enumerate(query_ids.to_pylist())}
    relevant_q, relevant_d = [], []
    for q, docs in judgements.relevant.items():
        if q in position_of:
            relevant_q.extend([position_of[q]] * len(docs))
            relevant_d.extend(docs)
    relevant_keys = np.unique(
        _pair_keys(np.asarray(relevant_q, np.int64), hash_ids(pa.array(relevant_d, pa.string())))
    )

    count = np.zeros(num_queries, np.int64)  # negatives accepted per query so far
    seen = np.zeros(0, np.uint64)  # sorted keys of the accepted (query, negative) pairs
    accepted_query: list[np.ndarray] = []
    accepted_doc: list[pa.Array] = []
    accepted_line: list[np.ndarray] = []
    lines = unknown = unjudged = 0
    with tqdm(desc="bm25 read triples", unit="line", unit_scale=True) as bar:
        for batch in iter_qidpidtriples(path, batch_size):
            lines += batch.num_rows
            bar.update(batch.num_rows)
            line_numbers = batch.column("line").to_numpy()
            for column in ("positive_id", "negative_id"):
                known_doc = corpus_ids.contains(batch.column(column))
                if not known_doc.all():
                    i = int(np.argmin(known_doc))
                    raise SchemaError(
                        f"{path}: line {line_numbers[i]}: passage {batch.column(column)[i].as_py()!r} is not "
                        f"in the corpus ({int((~known_doc).sum())} such ids in this batch); "
                        "the triples belong to another collection"
                    )
            hashes = hash_ids(batch.column("query_id"))
            at = np.minimum(np.searchsorted(sorted_query_hashes, hashes), num_queries - 1)
            known = sorted_query_hashes[at] == hashes
            unknown += int((~known).sum())
            qpos = query_order[at]
            positive_keys = _pair_keys(qpos[known], hash_ids(batch.column("positive_id").filter(known)))
            unjudged += int((~sorted_contains(relevant_keys, positive_keys)).sum())

            rows = np.flatnonzero(known & (count[qpos] < n))
            if not len(rows):
                continue
            keys = _pair_keys(qpos[rows], hash_ids(batch.column("negative_id").take(rows)))
            new = ~sorted_contains(relevant_keys, keys) & ~sorted_contains(seen, keys)
            rows, keys = rows[new], keys[new]
            _, first = np.unique(keys, return_index=True)  # a pair repeated within the batch: its first line
            first.sort()
            rows, keys = rows[first], keys[first]
            # every remaining pair is new to its query: keep as many as the query still lacks
            take = _rank_in_query(qpos[rows]) < n - count[qpos[rows]]
            rows, keys = rows[take], keys[take]
            if not len(rows):
                continue
            np.add.at(count, qpos[rows], 1)
            seen = np.sort(np.concatenate([seen, keys]))  # disjoint sets: no np.unique needed
            accepted_query.append(qpos[rows])
            accepted_doc.append(batch.column("negative_id").take(rows).combine_chunks())
            accepted_line.append(line_numbers[rows])
            if count.min() >= n:
                break  # every query of the split has its n negatives: the rest of the file adds none
    if not lines:
        raise SchemaError(f"{path}: no triples in file")
    if unknown == lines:
        raise SchemaError(
            f"{path}: none of its {lines} triples is for a query of the split; "
            "the triples belong to another split or collection"
        )

    query_of = np.concatenate(accepted_query) if accepted_query else np.zeros(0, np.int64)
    line_of = np.concatenate(accepted_line) if accepted_line else np.zeros(0, np.int64)
    order = np.lexsort((line_of, query_of))  # by query position, then file order
    docs = pa.chunked_array(accepted_doc, pa.string()).combine_chunks().take(pa.array(order))
    per_query = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(count)], pa.int64()), docs)
    names = query_ids.to_pylist()
    judged = np.array([q in judgements.positives for q in names], dtype=bool)
    grouped = np.flatnonzero(judged & (count > 0))
    kept = [names[i] for i in grouped]
    groups = validate_table(
        pa.table(
            {
                "query_id": pa.array(kept, pa.string()),
                "positive_ids": pa.array([judgements.positives[q] for q in kept], pa.list_(pa.string())),
                "negative_ids": pc.cast(per_query.take(pa.array(grouped)), pa.list_(pa.string())),
                "negative_source": pa.array([TRIPLES_SOURCE] * len(kept), pa.string()),
            }
        ),
        GROUPS,
        where=f"groups from {path}",
    )
    return TriplesGroups(
        groups=groups,
        lines=lines,
        unknown_query_lines=unknown,
        unjudged_positive_lines=unjudged,
        judged_queries_without_triples=int(judged.sum()) - len(grouped),
    )
