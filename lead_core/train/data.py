"""Training data: groups, corpus and queries loaded once; per-epoch negative sampling; batch layout.

Every batch is a pure function of (seed, epoch, batch index, rank): the query order of an epoch is
a permutation seeded by (seed, epoch), and each query's positive and negatives are drawn with a
generator seeded by (seed, epoch, query). So batches can be prepared ahead in background threads,
and a resumed run sees exactly the batches an uninterrupted run sees, from the data position
alone.

Sampling rules (documented choices):
  - one positive per query per epoch, drawn uniformly from its positives;
  - `num_negatives` distinct negatives drawn from its pool; a pool smaller than that is sampled
    with replacement (duplicates in the group) and counted at load time;
  - a negative that is also one of the query's positives is removed from the pool (false
    negatives; the public code let them through);
  - a group with no positive, or with no negative when negatives are asked for, is an error.

Batch layout (lead_core.models.base): Q query texts and Q*G passage texts, G = 1 + num_negatives,
passages[i*G] being query i's positive and the next num_negatives its negatives.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lead_core.data.schema import CORPUS, GROUPS, QUERIES, SchemaError, iter_batches, read_table
from lead_core.data.text import passage_texts

log = logging.getLogger(__name__)


class TrainingDataError(SchemaError):
    """Training inputs that do not fit together (unknown ids, empty split, groups without negatives)."""


@dataclass
class Batch:
    """One micro-batch on one rank: Q queries and Q*G passages (layout in the module docstring)."""

    query_ids: list[str]
    queries: list[str]
    doc_ids: list[str]
    passages: list[str]
    group_size: int
    epoch: int
    index: int  # micro-batch index within the epoch


def _first_null(indices: pa.Array) -> int | None:
    if indices.null_count == 0:
        return None
    return pc.index(pc.is_null(indices), True).as_py()


class TrainingData:
    """Groups, with ids resolved to rows of the corpus and queries (loaded once, kept as Arrow/numpy).

    Only the corpus rows that the groups name are kept (the corpus is streamed), so memory grows
    with the training pool, not with one Python object per passage.
    """

    def __init__(self, groups: str | Path, corpus: str | Path, queries: str | Path, num_negatives: int):
        self.groups_path, self.corpus_path, self.queries_path = Path(groups), Path(corpus), Path(queries)
        self.num_negatives = num_negatives
        for path in (self.groups_path, self.corpus_path, self.queries_path):
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file")
        table = read_table(self.groups_path, GROUPS)
        if table.num_rows == 0:
            raise TrainingDataError(f"{self.groups_path}: the groups file has no rows (empty training split)")
        self.query_ids: list[str] = table.column("query_id").to_pylist()
        self._load_queries(table)
        self._load_docs(table)
        self._check_counts()

    def __len__(self) -> int:
        return len(self.query_ids)

    # ----------------------------------------------------------------------------------- loading
    def _load_queries(self, groups: pa.Table) -> None:
        queries = read_table(self.queries_path, QUERIES)
        rows = pc.index_in(groups.column("query_id"), value_set=queries.column("query_id"))
        missing = _first_null(rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows)
        if missing is not None:
            raise TrainingDataError(
                f"{self.groups_path}: row {missing}: query_id {self.query_ids[missing]!r} "
                f"is not in the queries file {self.queries_path}"
            )
        self.query_texts: list[str] = queries.column("text").take(rows).to_pylist()

    def _load_docs(self, groups: pa.Table) -> None:
        positives = groups.column("positive_ids").combine_chunks()
        negatives = groups.column("negative_ids").combine_chunks()
        flat_pos, flat_neg = pc.list_flatten(positives), pc.list_flatten(negatives)
        needed = pc.unique(pa.concat_arrays([flat_pos, flat_neg]))
        kept = []
        for batch in iter_batches(self.corpus_path, CORPUS, columns=["doc_id", "title", "text"]):
            mask = pc.is_in(batch.column("doc_id"), value_set=needed)
            kept.append(batch.filter(mask))
        docs = pa.Table.from_batches(kept, schema=CORPUS.arrow) if kept else CORPUS.arrow.empty_table()
        docs = docs.combine_chunks()
        self.doc_ids = docs.column("doc_id")
        self.doc_titles = docs.column("title")
        self.doc_bodies = docs.column("text")

        def resolve(flat: pa.Array, lists: pa.Array, kind: str) -> tuple[np.ndarray, np.ndarray]:
            rows = pc.index_in(flat, value_set=self.doc_ids)
            missing = _first_null(rows)
            if missing is not None:
                group_row = pc.list_parent_indices(lists)[missing].as_py()
                raise TrainingDataError(
                    f"{self.groups_path}: row {group_row} (query_id {self.query_ids[group_row]!r}): "
                    f"{kind} doc_id {flat[missing].as_py()!r} is not in the corpus {self.corpus_path}"
                )
            parents = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
            return rows.to_numpy(zero_copy_only=False).astype(np.int64), parents

        pos_rows, pos_parent = resolve(flat_pos, positives, "positive")
        neg_rows, neg_parent = resolve(flat_neg, negatives, "negative")
        # Drop negatives that are positives of the same query (vectorised on (group, doc) keys).
        num_docs = max(len(self.doc_ids), 1)
        false_neg = np.isin(neg_parent * num_docs + neg_rows, pos_parent * num_docs + pos_rows)
        self.removed_false_negatives = int(false_neg.sum())
        if self.removed_false_negatives:
            log.warning(
                "%s: %d negatives are positives of the same query; they are not used as negatives",
                self.groups_path,
                self.removed_false_negatives,
            )
            neg_rows, neg_parent = neg_rows[~false_neg], neg_parent[~false_neg]
        n = len(self.query_ids)
        self.pos_rows, self.pos_offsets = pos_rows, _offsets(pos_parent, n)
        self.neg_rows, self.neg_offsets = neg_rows, _offsets(neg_parent, n)

    def _check_counts(self) -> None:
        num_pos = np.diff(self.pos_offsets)
        num_neg = np.diff(self.neg_offsets)
        if (num_pos == 0).any():
            row = int(np.flatnonzero(num_pos == 0)[0])
            raise TrainingDataError(
                f"{self.groups_path}: row {row} (query_id {self.query_ids[row]!r}): no positive doc_id; "
                "every training group needs at least one"
            )
        if self.num_negatives > 0 and (num_neg == 0).any():
            row = int(np.flatnonzero(num_neg == 0)[0])
            raise TrainingDataError(
                f"{self.groups_path}: row {row} (query_id {self.query_ids[row]!r}): no negative doc_id "
                f"(after removing its positives); training asks for {self.num_negatives} per query"
            )
        self.short_pools = int((num_neg < self.num_negatives).sum())
        if self.short_pools:
            log.warning(
                "%s: %d of %d groups have fewer than %d negatives; theirs are sampled with replacement",
                self.groups_path,
                self.short_pools,
                len(num_neg),
                self.num_negatives,
            )

    # ---------------------------------------------------------------------------------- sampling
    def sample_group(self, seed: int, epoch: int, query: int) -> np.ndarray:
        """Corpus rows [G] of query `query` in epoch `epoch`: its positive, then its negatives."""
        rng = np.random.default_rng([seed, epoch, query])
        lo, hi = self.pos_offsets[query], self.pos_offsets[query + 1]
        positive = self.pos_rows[lo + rng.integers(hi - lo)]
        pool = self.neg_rows[self.neg_offsets[query] : self.neg_offsets[query + 1]]
        n = self.num_negatives
        chosen = rng.choice(len(pool), size=n, replace=len(pool) < n) if n else np.empty(0, np.int64)
        return np.concatenate([[positive], pool[chosen]])

    def texts(self, rows: np.ndarray) -> tuple[list[str], list[str]]:
        """(doc ids, passage texts) of corpus rows."""
        idx = pa.array(rows, type=pa.int64())
        ids = self.doc_ids.take(idx).to_pylist()
        titles = self.doc_titles.take(idx).to_pylist()
        bodies = self.doc_bodies.take(idx).to_pylist()
        return ids, passage_texts(titles, bodies)


def _offsets(parents: np.ndarray, n: int) -> np.ndarray:
    """CSR offsets [n+1] of values grouped by their (sorted) parent index."""
    counts = np.bincount(parents, minlength=n)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class BatchPlan:
    """Which queries form micro-batch `index` of `epoch` on `rank` (DistributedSampler-like).

    An epoch is a seeded permutation of the queries cut into global batches of
    batch_size * world_size queries (the incomplete last one dropped, so every rank sees equal
    shapes); rank r takes the r-th slice of each global batch.
    """

    def __init__(self, data: TrainingData, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size = rank, world_size
        global_batch = batch_size * world_size
        self.batches_per_epoch = len(data) // global_batch
        if self.batches_per_epoch == 0:
            raise TrainingDataError(
                f"{data.groups_path}: {len(data)} training queries, fewer than one global batch "
                f"(batch_size {batch_size} x {world_size} device(s) = {global_batch})"
            )
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()  # batches are prepared in background threads

    def order(self, epoch: int) -> np.ndarray:
        """[num_queries] query order of `epoch`, a permutation seeded by (seed, epoch)."""
        with self._lock:
            if epoch not in self._orders:
                if len(self._orders) >= 2:
                    self._orders.pop(min(self._orders))
                self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
            return self._orders[epoch]

    def position(self, micro_batch: int) -> tuple[int, int]:
        """(epoch, index within the epoch) of the run's `micro_batch`-th micro-batch (0-based)."""
        return divmod(micro_batch, self.batches_per_epoch)

    def query_indices(self, epoch: int, index: int) -> np.ndarray:
        start = (index * self.world_size + self.rank) * self.batch_size
        return self.order(epoch)[start : start + self.batch_size]

    def batch(self, micro_batch: int) -> Batch:
        epoch, index = self.position(micro_batch)
        queries = self.query_indices(epoch, index)
        rows = np.concatenate([self.data.sample_group(self.seed, epoch, int(q)) for q in queries])
        doc_ids, passages = self.data.texts(rows)
        return Batch(
            query_ids=[self.data.query_ids[q] for q in queries],
            queries=[self.data.query_texts[q] for q in queries],
            doc_ids=doc_ids,
            passages=passages,
            group_size=1 + self.data.num_negatives,
            epoch=epoch,
            index=index,
        )
