"""BM25 retrieval speed of bm25s's exact backends (numpy, numba) and threads, and that they agree.

Builds and saves the SciFact index once (`lead bm25 --out-index`), then retrieves the train+test
queries (1,109) at k=1000 with each backend and thread count from the loaded index, as a query
shard does; reports queries/s and queries/s per thread, and whether each run has the first (numpy)
run's scores and, per query, its documents above the k-th score (the backends keep different
documents among those tied at the k-th score; measured here: 0 of 1,109 queries differ above it).
Numbers vary with the machine's load: the development machine has 2 cores shared with other work.

    .venv/bin/python benchmarks/bm25_backends.py [--datasets ../shared/datasets] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lead_core import ingest
from lead_core.bm25.index import BM25Index
from lead_core.data.schema import QUERIES, read_table

REPO = Path(__file__).resolve().parents[1]


def _same_top_k(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether two top-k results [Q, k] hold the same scores and, per query, the same documents
    above the k-th score (which of the documents tied at the k-th score make the cut may differ)."""
    (pos_a, score_a), (pos_b, score_b) = a, b
    if not np.allclose(np.sort(score_a, 1), np.sort(score_b, 1), atol=1e-5):
        return False
    for q in range(len(pos_a)):
        kth = score_a[q].min()
        if set(pos_a[q][score_a[q] > kth]) != set(pos_b[q][score_b[q] > kth]):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--k", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bm25-backends-") as tmp:
        measure(Path(tmp), args)


def measure(work: Path, args: argparse.Namespace) -> None:
    """Ingest, index and time under `work` (a scratch folder), one JSON line per backend and thread count."""
    texts: list[str] = []
    for split in ("train", "test"):
        out = work / split
        ingest.run(ingest.Config(source=f"{args.datasets}/scifact", layout="beir", split=split, out=str(out)))
        queries = read_table(out / "queries.parquet", QUERIES)
        texts += queries.column("text").to_pylist()
    BM25Index.build(work / "train" / "corpus.parquet").save(work / "index")

    backends = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])
    reference = None
    rows = []
    for backend in backends:
        index = BM25Index.load(work / "index", backend=backend)
        for threads in args.threads:
            index.search(texts[:8], args.k, threads)  # numba compiles on first use: not timed
            started = time.perf_counter()
            positions, scores = index.search(texts, args.k, threads)
            seconds = time.perf_counter() - started
            if reference is None:
                reference = (positions, scores)
            same = _same_top_k(reference, (positions, scores))
            rows.append(
                {
                    "backend": backend,
                    "threads": threads,
                    "queries": len(texts),
                    "seconds": round(seconds, 3),
                    "queries_per_s": round(len(texts) / seconds, 1),
                    "queries_per_s_per_thread": round(len(texts) / seconds / threads, 1),
                    "same_top_k_as_first": same,
                }
            )
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
