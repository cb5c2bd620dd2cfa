"""BM25 baselines on real data: ingest -> bm25 -> evaluate, one table.

- SciFact test (BEIR layout): nDCG@10, RR@10, R@100. References: BEIR paper BM25 0.665 nDCG@10;
  bm25s with English stopwords and no stemming 0.662 (../shared/datasets/README.md).
- TREC DL19 and DL20 over the pooled MS MARCO passages (31,362, not the 8.8M collection):
  nDCG@10, AP@1000 and R@1000 at grade >= 2. Qrels outside the pool are dropped at ingest; for
  DL20 that removes judged-relevant passages, so recall is only meaningful inside the pool.

    python benchmarks/bm25_baselines.py [--datasets ../shared/datasets] [--stemmer english|none]

Writes benchmarks/results/bm25_baselines-<stemmer>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from lead_core import bm25, ingest  # noqa: E402
from lead_core.data.trec import read_qrels, read_run  # noqa: E402
from lead_core.evaluate import evaluate_run, format_table  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"

# name -> (dataset folder, layout, split, measures, relevance level, drop qrels outside the corpus)
DATASETS = {
    "SciFact test": ("scifact", "beir", "test", ["nDCG@10", "RR@10", "R@100"], 1, False),
    "DL19 (pool)": (
        "msmarco-dl19-dl20-pools",
        "msmarco",
        "dl19",
        ["nDCG@10", "AP(rel=2)@1000", "R(rel=2)@1000"],
        1,
        True,
    ),
    "DL20 (pool)": (
        "msmarco-dl19-dl20-pools",
        "msmarco",
        "dl20",
        ["nDCG@10", "AP(rel=2)@1000", "R(rel=2)@1000"],
        1,
        True,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--stemmer", default="english", help="PyStemmer algorithm or 'none'")
    parser.add_argument("--stopwords", default="en")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    rows: dict[str, dict[str, float]] = {}
    details: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (folder, layout, split, measures, level, drop) in DATASETS.items():
            work = Path(tmp) / f"{folder}-{split}"
            started = time.perf_counter()
            ingest.run(
                ingest.Config(
                    source=str(Path(args.datasets) / folder),
                    layout=layout,
                    split=split,
                    out=str(work / "data"),
                    drop_unknown_qrels=drop,
                )
            )
            summary = bm25.run(
                bm25.Config(
                    corpus=str(work / "data" / "corpus.parquet"),
                    queries=str(work / "data" / "queries.parquet"),
                    out_run=str(work / "run.parquet"),
                    stemmer=args.stemmer,
                    stopwords=args.stopwords,
                )
            )
            result = evaluate_run(
                read_run(work / "run.parquet"), read_qrels(work / "data" / "qrels.parquet"), measures, level
            )
            rows[name] = result.aggregate
            details[name] = {
                "metrics": result.aggregate,
                "queries": result.num_queries,
                "docs": summary["num_docs"],
                "seconds": round(time.perf_counter() - started, 2),
            }
    print(f"BM25 (bm25s, k1=1.5, b=0.75, stopwords={args.stopwords}, stemmer={args.stemmer})")
    print(format_table(rows, title="dataset"))
    print("references: SciFact nDCG@10 BEIR 0.665; bm25s + English stopwords, no stemmer: 0.662")
    out = Path(args.out) if args.out else RESULTS / f"bm25_baselines-{args.stemmer}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"stemmer": args.stemmer, "stopwords": args.stopwords, "results": details}, indent=1)
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
