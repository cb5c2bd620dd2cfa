"""Time to evaluate an MS MARCO dev-sized run: 6,980 queries x 1,000 results, default measures.

The run and qrels are synthetic (random scores over a 8.8M-id space; ~1.1 judged-relevant
passages per query, as in MS MARCO dev.small, half of them placed inside the top 1000). Reports
the time of `evaluate_run` and its parts (Arrow -> dicts, pytrec_eval), and of reading the run
from Parquet and from a TREC file. Wall time depends on what else runs on the machine; CPU time
(process time) is reported beside it.

    python benchmarks/eval_speed.py [--queries 6980] [--depth 1000] [--repeats 3]

Writes benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lead_core.data.schema import QRELS, RUN, write_table
from lead_core.data.trec import read_qrels, read_run, write_trec_run
from lead_core.evaluate import DEFAULT_METRICS, evaluate_run, format_table, qrels_dict
from lead_core.evaluate.metrics import run_dicts

RESULTS = Path(__file__).resolve().parent / "results" / "eval_speed.json"


def synthetic(num_queries: int, depth: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """(run, qrels): `depth` distinct random pids per query; 1 or 2 relevant pids (mean ~1.1)."""
    rng = np.random.default_rng(seed)
    qids = np.arange(num_queries) + 1_000_000
    # distinct pids within a query: a random start and stride (stride * depth < collection size)
    start = rng.integers(0, 8_841_823, size=(num_queries, 1))
    stride = rng.integers(1, 8_000, size=(num_queries, 1))
    pids = (start + stride * np.arange(depth)[None, :]) % 8_841_823
    scores = -np.sort(-rng.standard_normal((num_queries, depth)).astype(np.float32) * 3 + 20, axis=1)
    num_rel = 1 + (rng.random(num_queries) < 0.1)
    qrel_q, qrel_d = [], []
    for i, n in enumerate(num_rel):
        for j in range(n):
            # half retrieved, somewhere in the ranking (often near the top); each pid judged once
            pos = min(int(rng.geometric(0.05)) - 1, depth - 1)
            retrieved = rng.random() < 0.5 and str(pids[i, pos]) not in qrel_d[len(qrel_d) - j :]
            qrel_d.append(str(pids[i, pos]) if retrieved else f"unretrieved-{i}-{j}")
            qrel_q.append(str(qids[i]))
    run = pa.table(
        {
            "query_id": pa.array(np.repeat(qids, depth).astype(str)),
            "doc_id": pa.array(pids.reshape(-1).astype(str)),
            "rank": pa.array(np.tile(np.arange(1, depth + 1, dtype=np.int32), num_queries)),
            "score": pa.array(scores.reshape(-1)),
        }
    )
    qrels = pa.table(
        {
            "query_id": pa.array(qrel_q),
            "doc_id": pa.array(qrel_d),
            "relevance": pa.array(np.ones(len(qrel_q), np.int32)),
        }
    )
    return run, qrels


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds over `repeats` calls, and the last result."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=6980)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    run, qrels = synthetic(args.queries, args.depth)
    qd = qrels_dict(qrels)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_table(run, Path(tmp) / "run.parquet", RUN)
        write_trec_run(run, Path(tmp) / "run.trec")
        write_table(qrels, Path(tmp) / "qrels.parquet", QRELS)
        steps = {
            "read run (Parquet)": lambda: read_run(Path(tmp) / "run.parquet"),
            "read run (TREC text)": lambda: read_run(Path(tmp) / "run.trec"),
            "read qrels + dict": lambda: qrels_dict(read_qrels(Path(tmp) / "qrels.parquet")),
            "run -> dicts (trec_eval order, cut at 10)": lambda: run_dicts(run, [10]),
            "evaluate_run (default measures)": lambda: evaluate_run(run, qd),
        }
        results = {}
        for name, fn in steps.items():
            wall, cpu, out = timed(fn, args.repeats)
            rows[name] = {"wall s": wall, "cpu s": cpu}
            results[name] = out
    metrics = results["evaluate_run (default measures)"].aggregate
    total = rows["read run (Parquet)"]["wall s"] + rows["evaluate_run (default measures)"]["wall s"]
    print(
        f"{args.queries} queries x {args.depth} results = {run.num_rows:,} run rows; measures {DEFAULT_METRICS}"
    )
    print(format_table(rows, title="step", digits=3))
    print(
        f"read (Parquet) + evaluate: {total:.2f} s wall; values on the synthetic run: {json.dumps(metrics)}"
    )
    report = {
        "queries": args.queries,
        "depth": args.depth,
        "run_rows": run.num_rows,
        "qrels_rows": qrels.num_rows,
        "measures": DEFAULT_METRICS,
        "seconds": rows,
        "read_parquet_plus_evaluate_wall_s": total,
        "metrics": metrics,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
