"""Ingestion throughput and peak memory on a generated MS MARCO-format collection.

Generates ``collection.tsv`` files of random words (mean ~60 words per passage, like MS MARCO)
with 1,000 judged queries, runs `lead ingest` on each in a fresh child process, and reports
lines/s and the child's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end, minus
the RSS after imports). Wall-clock lines/s depends on what else runs on the machine; lines per
CPU-second (user + system time of the ingesting process) less so. Run at two sizes: peak memory must stay flat as the collection grows.

    python benchmarks/ingest_throughput.py [--sizes 250000,1000000] [--keep DIR]

Writes benchmarks/results/ingest_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_throughput.json"
MEAN_WORDS = 60
NUM_QUERIES = 1000

CHILD = r"""
import json, resource, sys, time
from lead_core.ingest import Config, run
import pyarrow, pandas, numpy  # noqa: F401  (imports counted in the baseline, not in ingest)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
counts = run(Config(source=sys.argv[1], layout="msmarco", split="dev", out=sys.argv[2]))
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "base_rss_mib": base / 1024, "peak_rss_mib": peak / 1024, "counts": counts}))
"""


def generate(folder: Path, num_passages: int, seed: int = 0) -> int:
    """Write collection.tsv (num_passages lines), queries.dev.tsv and qrels.dev.tsv; returns bytes written."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=n)) for n in rng.integers(2, 11, size=30_000)]
    vocab_arr = np.array(vocab, dtype=object)
    folder.mkdir(parents=True, exist_ok=True)
    chunk = 50_000
    with open(folder / "collection.tsv", "w", encoding="utf-8") as fh:
        for start in range(0, num_passages, chunk):
            n = min(chunk, num_passages - start)
            lengths = np.maximum(1, rng.poisson(MEAN_WORDS, size=n))
            words = vocab_arr[rng.integers(0, len(vocab), size=int(lengths.sum()))]
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            fh.writelines(f"{start + i}\t{' '.join(words[bounds[i] : bounds[i + 1]])}\n" for i in range(n))
    pids = rng.choice(num_passages, size=NUM_QUERIES, replace=False)
    with open(folder / "queries.dev.tsv", "w") as fq, open(folder / "qrels.dev.tsv", "w") as fr:
        for qid, pid in enumerate(pids):
            fq.write(f"{qid}\tquery {qid}\n")
            fr.write(f"{qid}\t0\t{pid}\t1\n")
    return (folder / "collection.tsv").stat().st_size


def measure(num_passages: int, work: Path) -> dict:
    src = work / f"src-{num_passages}"
    t0 = time.perf_counter()
    size = generate(src, num_passages)
    gen_s = time.perf_counter() - t0
    out = work / f"out-{num_passages}"
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ingest of {num_passages} lines failed:\n{proc.stderr}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["counts"]["docs"] == num_passages
    return {
        "lines": num_passages,
        "collection_mib": size / 2**20,
        "generate_s": gen_s,
        "ingest_s": child["seconds"],
        "lines_per_s": num_passages / child["seconds"],
        "cpu_s": child["cpu_seconds"],
        "lines_per_cpu_s": num_passages / child["cpu_seconds"],
        "mib_per_s": size / 2**20 / child["seconds"],
        "rss_after_imports_mib": child["base_rss_mib"],
        "peak_rss_mib": child["peak_rss_mib"],
        "peak_rss_growth_mib": child["peak_rss_mib"] - child["base_rss_mib"],
        "corpus_parquet_mib": (out / "corpus.parquet").stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="250000,1000000", help="collection sizes in lines, comma-separated"
    )
    parser.add_argument("--keep", help="generate into this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="lead-ingest-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        rows = [measure(n, work) for n in sizes]
    print(
        f"{'lines':>10} {'MiB':>7} {'ingest s':>9} {'lines/s':>10} {'MiB/s':>7} {'lines/cpu-s':>12} {'peak RSS MiB':>13} {'growth MiB':>11}"
    )
    for r in rows:
        print(
            f"{r['lines']:>10,} {r['collection_mib']:>7.0f} {r['ingest_s']:>9.1f} {r['lines_per_s']:>10,.0f} "
            f"{r['mib_per_s']:>7.1f} {r['lines_per_cpu_s']:>12,.0f} {r['peak_rss_mib']:>13.0f} {r['peak_rss_growth_mib']:>11.0f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "ingest_throughput",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "mean_words_per_passage": MEAN_WORDS,
        "results": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
