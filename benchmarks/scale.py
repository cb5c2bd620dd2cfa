r"""Cost curves of the CPU stages (ingest, BM25 index + retrieval, mine, evaluate) against corpus and query count.

The data: a synthetic corpus with MS MARCO's statistics, fitted at start-up to the 31,362 real MS
MARCO passages of ``../shared/datasets/msmarco-dl19-dl20-pools`` (their whitespace tokens, with
case and punctuation, so byte and token counts per passage are MS MARCO's):

- passage lengths: drawn from the pool's empirical words-per-passage distribution (mean 59.4);
- words: i.i.d. from a Zipf-Mandelbrot law p(r) ∝ (r + q)^-s over ranks r = 1..V, (s, q) fitted by
  least squares to the pool's rank-frequency curve (ranks with frequency >= 5). Rank r <= the pool's
  number of word types is the pool's r-th most frequent token; higher ranks are made-up words
  (5 letters encoding the rank + random letters, lengths as the pool's rare words). V is chosen so
  that the expected number of term types BM25's tokenizer sees (lower-cased \w+ words: the pool's,
  plus one per made-up word drawn) in 8.8M passages equals Heaps' law (types = K n^beta, fitted on
  prefixes of the pool, lower-cased \w+ words) extrapolated to 8.8M passages;
- queries: lengths from the 97 real TREC DL19/DL20 queries of the pool (mean 5.8 words), words drawn
  from the query's one positive passage (one qrel per query, as MS MARCO's ~1.06).

Written in the MS MARCO layout (collection.tsv, queries.train.tsv, qrels.train.tsv) to a scratch
folder under /tmp (removed at the end unless --keep). Every measurement runs in a fresh child
process that reports its own wall time, CPU time (user + system of all its threads,
getrusage(RUSAGE_SELF)) and peak RSS (VmHWM of /proc/self/status), so peaks of different stages never mix; the
load average of the machine (os.getloadavg) is recorded before and after each.

Stages, as the msmarco pipeline runs them:
- ingest: `lead_core` ingest run() of the train split (layout msmarco);
- bm25: the bm25 stage run() as the bm25 component calls it (k=1000, 100 BM25 negatives per query,
  run.parquet + run.trec + groups.parquet); the index build (tokenize + bm25s index) is timed apart
  from the retrieval inside the same child (rusage at the end of BM25Index.build); also, on the same
  index, retrieval with bm25s' numba backend (if numba is importable) on 1 and 2 threads;
- mine: mine run() (depth 100, 100 negatives) on synthetic top-1000 runs of `--mine-queries` queries;
- evaluate: evaluate run() (RR@10, nDCG@10, R@1000, AP@1000) on such runs of `--eval-queries` queries.

Retrieval is measured on `--queries` queries per corpus size and extrapolated per query; corpus
sizes beyond `--sizes` (8,841,823 passages, 500k training queries) are extrapolated from the fits.

    python benchmarks/scale.py [--sizes 100000,300000,1000000] [--queries 2000]
        [--bm25-queries 2000,10000] [--mine-queries 2000,10000,30000]
        [--eval-queries 1000,3000,6980] [--keep DIR]

Writes benchmarks/results/scale.json and scale.png, prints a table.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
POOL = REPO.parent / "shared" / "datasets" / "msmarco-dl19-dl20-pools"
MSMARCO_PASSAGES = 8_841_823
MSMARCO_TRAIN_QUERIES = 502_939  # train queries with qrels (the ingest keeps only those)
MSMARCO_DEV_QUERIES = 6_980
RUN_DEPTH = 1000  # bm25_k and search_k of the msmarco profile
MINE_DEPTH = 100  # mine_depth
NEGATIVES = 100  # negative_pool
METRICS = ["RR@10", "nDCG@10", "R@1000", "AP@1000"]

# ---------------------------------------------------------------------------------------------
# Statistics of the real passages


def fit_statistics(pool: Path, seed: int = 0) -> dict:
    """Length, Zipf-Mandelbrot and Heaps fits of the pool's passages (see the module docstring)."""
    with gzip.open(pool / "collection.tsv.gz", "rt", encoding="utf-8") as fh:
        passages = [line.rstrip("\n").split("\t", 1)[1] for line in fh]
    tokens = [p.split() for p in passages]
    lengths = np.array([len(t) for t in tokens])
    counts = collections.Counter(w for t in tokens for w in t)
    ranked = [w for w, _ in counts.most_common()]
    freq = np.array([counts[w] for w in ranked], dtype=np.float64)
    ranks = np.arange(1, len(freq) + 1, dtype=np.float64)
    keep = freq >= 5
    best = None
    for q in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 50.0):
        x, y = np.log(ranks[keep] + q), np.log(freq[keep])
        slope, icpt = np.polyfit(x, y, 1)
        err = float(np.mean((icpt + slope * x - y) ** 2))
        if best is None or err < best[0]:
            best = (err, -slope, q)
    _, s, q = best
    # Heaps' law on prefixes of the pool in a random passage order, over the words the tokenizer sees.
    order = np.random.default_rng(seed).permutation(len(tokens))
    word = re.compile(r"\w+")
    seen: set[str] = set()
    n_tok, points = 0, []
    marks = set(np.unique(np.geomspace(100, len(order), 30).astype(int)).tolist())
    for i, j in enumerate(order, 1):
        seen.update(word.findall(passages[j].lower()))
        n_tok += len(tokens[j])
        if i in marks:
            points.append((n_tok, len(seen)))
    pts = np.array(points, dtype=np.float64)
    beta, log_k = np.polyfit(np.log(pts[:, 0]), np.log(pts[:, 1]), 1)
    query_lengths = []
    for split in ("dl19", "dl20"):
        for line in (pool / f"queries.{split}.tsv").read_text(encoding="utf-8").splitlines():
            query_lengths.append(len(line.split("\t", 1)[1].split()))
    rare = [len(w) for w in ranked if counts[w] == 1]
    return {
        "pool_passages": len(passages),
        "pool_tokens": int(lengths.sum()),
        "pool_types": len(ranked),
        "pool_word_types": len(seen),
        "mean_words_per_passage": float(lengths.mean()),
        "mean_bytes_per_line": float(np.mean([len(p.encode()) for p in passages])) + 8.0,
        "zipf_s": float(s),
        "zipf_q": float(q),
        "heaps_k": float(math.exp(log_k)),
        "heaps_beta": float(beta),
        "lengths": lengths,
        "query_lengths": np.array(query_lengths),
        "words": ranked,
        "rare_word_lengths": np.array(rare or [8]),
    }


def choose_vocabulary(stats: dict, target_passages: int = MSMARCO_PASSAGES) -> int:
    """V such that E[tokenizer word types in `target_passages` passages] = Heaps' law there.

    Word types: the pool's (all of them appear at this size) plus one per distinct made-up word
    (rank > the pool's whitespace types) drawn.
    """
    n_tokens = target_passages * stats["mean_words_per_passage"]
    target = stats["heaps_k"] * n_tokens ** stats["heaps_beta"]
    stats["target_word_types_8m8"] = target
    pool = stats["pool_types"]

    def expected_types(v: int) -> float:
        w = (np.arange(1, v + 1, dtype=np.float64) + stats["zipf_q"]) ** -stats["zipf_s"]
        return stats["pool_word_types"] + float(np.sum(-np.expm1(-n_tokens * w[pool:] / w.sum())))

    lo, hi = pool, 26**5
    if expected_types(hi) < target:
        return hi
    while hi - lo > max(1000, lo // 100):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if expected_types(mid) < target else (lo, mid)
    return hi


def vocabulary(stats: dict, v: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(words [V] object array in rank order, cumulative probabilities [V])."""
    real = stats["words"][:v]
    n = max(0, v - len(real))
    # made-up words: a fixed-width base-26 code of the rank (keeps them distinct) + random letters
    width = max(5, int(stats["rare_word_lengths"].max()))
    chars = rng.integers(ord("a"), ord("z") + 1, size=(n, width), dtype=np.uint8)
    r = np.arange(len(real), len(real) + n)
    for i in range(5):
        r, d = np.divmod(r, 26)
        chars[:, i] = ord("a") + d
    lengths = np.maximum(5, rng.choice(stats["rare_word_lengths"], size=n))
    chars[np.arange(width)[None, :] >= lengths[:, None]] = 0  # NUL-padded: shorter words
    made_up = chars.view(f"S{width}").ravel().astype(str).astype(object).tolist()
    words = np.array(real + made_up, dtype=object)
    w = (np.arange(1, v + 1, dtype=np.float64) + stats["zipf_q"]) ** -stats["zipf_s"]
    return words, np.cumsum(w / w.sum())


def generate(
    folder: Path,
    num_passages: int,
    num_queries: int,
    stats: dict,
    words: np.ndarray,
    cdf: np.ndarray,
    seed: int,
) -> dict:
    """collection.tsv, queries.train.tsv, qrels.train.tsv in `folder`; returns sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    positives = np.sort(rng.choice(num_passages, size=num_queries, replace=False))
    qids = rng.choice(10 * num_queries + 10**6, size=num_queries, replace=False) + 1
    query_lines, qrel_lines, next_pos = [], [], 0
    chunk = 50_000
    with open(folder / "collection.tsv", "w", encoding="utf-8") as fh:
        for start in range(0, num_passages, chunk):
            n = min(chunk, num_passages - start)
            lengths = rng.choice(stats["lengths"], size=n)
            ranks = np.searchsorted(cdf, rng.random(int(lengths.sum())))
            tokens = words[np.minimum(ranks, len(words) - 1)]
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            fh.writelines(f"{start + i}\t{' '.join(tokens[bounds[i] : bounds[i + 1]])}\n" for i in range(n))
            while next_pos < num_queries and positives[next_pos] < start + n:
                i = positives[next_pos] - start
                passage = tokens[bounds[i] : bounds[i + 1]]
                qlen = int(rng.choice(stats["query_lengths"]))
                qwords = passage[rng.integers(0, len(passage), size=qlen)]
                qid = int(qids[next_pos])
                query_lines.append(f"{qid}\t{' '.join(qwords)}\n")
                qrel_lines.append(f"{qid}\t0\t{positives[next_pos]}\t1\n")
                next_pos += 1
    order = rng.permutation(num_queries)  # queries not in passage order
    (folder / "queries.train.tsv").write_text("".join(query_lines[i] for i in order), encoding="utf-8")
    (folder / "qrels.train.tsv").write_text("".join(qrel_lines[i] for i in order), encoding="utf-8")
    return {"collection_bytes": (folder / "collection.tsv").stat().st_size}


def synthetic_run(folder: Path, num_queries: int, num_passages: int, seed: int) -> tuple[Path, Path]:
    """A top-1000 RUN Parquet of `num_queries` queries over pids 0..num_passages-1, and its QRELS.

    Each query's 1000 passages are distinct (an arithmetic progression mod num_passages with a step
    coprime to it); one positive per query, inside its top 1000 for 80% of the queries.
    """
    import pyarrow as pa

    from lead_core.data.schema import QRELS, RUN, write_table

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    starts = rng.integers(0, num_passages, size=num_queries)
    steps = rng.integers(1, num_passages // RUN_DEPTH, size=num_queries)
    while True:  # steps coprime to num_passages: the 1000 passages of a query are distinct
        bad = np.gcd(steps, num_passages) != 1
        if not bad.any():
            break
        steps[bad] = rng.integers(1, num_passages // RUN_DEPTH, size=int(bad.sum()))
    pids = (starts[:, None] + np.arange(RUN_DEPTH)[None, :] * steps[:, None]) % num_passages
    scores = -np.sort(-rng.random((num_queries, RUN_DEPTH), dtype=np.float32), axis=1) * 30
    qids = np.char.add("q", np.arange(num_queries).astype(str))
    run = pa.table(
        {
            "query_id": pa.array(np.repeat(qids, RUN_DEPTH).tolist(), pa.string()),
            "doc_id": pa.array(pids.reshape(-1).astype(str).tolist(), pa.string()),
            "rank": pa.array(np.tile(np.arange(1, RUN_DEPTH + 1, dtype=np.int32), num_queries)),
            "score": pa.array(scores.reshape(-1)),
        }
    )
    in_run = rng.random(num_queries) < 0.8
    positive = np.where(
        in_run,
        pids[np.arange(num_queries), rng.integers(0, RUN_DEPTH, size=num_queries)],
        (starts + num_passages // 2 + 1) % num_passages,
    )
    qrels = pa.table(
        {
            "query_id": pa.array(qids.tolist(), pa.string()),
            "doc_id": pa.array(positive.astype(str).tolist(), pa.string()),
            "relevance": pa.array(np.ones(num_queries, np.int32)),
        }
    )
    write_table(run, folder / "run.parquet", RUN)
    write_table(qrels, folder / "qrels.parquet", QRELS)
    return folder / "run.parquet", folder / "qrels.parquet"


# ---------------------------------------------------------------------------------------------
# Child processes: one measurement each


CHILD = r"""
import json, os, resource, sys, time
args = json.loads(sys.argv[1])
stage = args["stage"]
import numpy, pyarrow, pandas  # noqa: F401  (imports counted in the baseline, not in the stage)
if stage == "ingest":
    from lead_core import ingest as mod
elif stage == "bm25":
    import bm25s
    from lead_core import bm25 as mod
    from lead_core.bm25 import index as bm25_index
elif stage == "bm25-role":  # the bm25 stage as the bm25-index / bm25-shard components run it
    from lead_core import bm25 as mod
elif stage == "mine":
    from lead_core import mine as mod
else:
    from lead_core.evaluate import stage as mod

def usage():
    # CPU: user + system of every thread. Peak: VmHWM, the high-water RSS of this process image
    # (ru_maxrss would keep the parent's peak across fork + exec).
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return {"wall": time.perf_counter(), "cpu": r.ru_utime + r.ru_stime, "peak": hwm * 1024}

base = usage()
out = {"base_rss_bytes": base["peak"]}

if stage == "ingest":
    out["summary"] = mod.run(mod.Config(source=args["source"], layout="msmarco", split="train", out=args["out"]))
elif stage == "bm25":
    stash = {}
    build = bm25_index.BM25Index.build.__func__
    def timed_build(cls, *a, **kw):
        index = build(cls, *a, **kw)
        stash["index"], stash["after_build"] = index, usage()
        return index
    bm25_index.BM25Index.build = classmethod(timed_build)
    out["summary"] = mod.run(mod.Config(
        corpus=args["data"] + "/corpus.parquet", queries=args["queries"], qrels=args["data"] + "/qrels.parquet",
        out_run=args["out"] + "/run.parquet", out_trec=args["out"] + "/run.trec" if args.get("trec", True) else None,
        out_groups=args["out"] + "/groups.parquet", k=args["k"], negatives="bm25",
        num_negatives=args["negatives"]))
    b = stash["after_build"]
    out["vocabulary"] = len(stash["index"].retriever.vocab_dict)
    out["backend"] = stash["index"].retriever.backend  # the stage's (auto: numba when installed)
    out["index"] = {"wall_s": b["wall"] - base["wall"], "cpu_s": b["cpu"] - base["cpu"], "peak_rss_bytes": b["peak"]}
else:
    cfg = args["config"]
    out["summary"] = mod.run(mod.Config(**cfg))
end = usage()
out.update(wall_s=end["wall"] - base["wall"], cpu_s=end["cpu"] - base["cpu"], peak_rss_bytes=end["peak"])
if stage == "bm25":
    out["retrieve"] = {"wall_s": end["wall"] - b["wall"], "cpu_s": end["cpu"] - b["cpu"]}
    # Retrieval alone on the same index, per backend and thread count (after the stage's peak).
    import pyarrow.parquet as pq
    texts = pq.read_table(args["queries"], columns=["text"]).column("text").to_pylist()
    index = stash["index"]
    variants = {}
    for backend, threads in args["variants"]:
        if backend == "numba":
            try:
                import numba  # noqa: F401
            except ImportError:
                variants[f"{backend}-{threads}"] = {"error": "numba not installed"}
                continue
        index.retriever.backend = backend
        index.search(texts[:20], args["k"], threads)  # warm-up (numba compiles)
        t0 = usage()
        index.search(texts, args["k"], threads)
        t1 = usage()
        variants[f"{backend}-{threads}"] = {"queries": len(texts), "wall_s": t1["wall"] - t0["wall"], "cpu_s": t1["cpu"] - t0["cpu"]}
    out["variants"] = variants
print("SCALE-RESULT " + json.dumps(out, default=str))
"""


def cached(args: dict, log: Path) -> dict | None:
    """The last result of a child with these arguments in measurements.jsonl (next to `log`), if any."""
    done, key, found = log.with_name("measurements.jsonl"), json.dumps(args, sort_keys=True), None
    if done.exists():
        for line in done.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["key"] == key:
                found = entry["result"]
    return found


def measure(args: dict, log: Path, reuse: bool = True) -> dict:
    """Run one stage in a child process; its own figures plus the load average around it.

    Each result is also appended to measurements.jsonl next to the log; a rerun into the same
    --keep folder takes a measurement with the same arguments from there instead of repeating it.
    """
    done, key = log.with_name("measurements.jsonl"), json.dumps(args, sort_keys=True)
    if reuse and (found := cached(args, log)) is not None:
        return found
    env = dict(os.environ, TQDM_DISABLE="1", MLFLOW_TRACKING_URI="")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - t0
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"=== {json.dumps(args)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{args['stage']} failed (log {log}):\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("SCALE-RESULT ")][-1]
    result = json.loads(line.removeprefix("SCALE-RESULT "))
    result.update(process_wall_s=wall, load_before=load_before, load_after=os.getloadavg())
    with open(done, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"key": key, "result": result}) + "\n")
    return result


def _brief(r: dict) -> str:
    return (
        f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"load {r['load_before'][0]:.1f}"
    )


def subset_queries(data: Path, n: int, out: Path) -> Path:
    """The first n queries of an ingested split as a QUERIES Parquet."""
    from lead_core.data.schema import QUERIES, read_table, write_table

    if out.exists():  # from an earlier run into the same --keep folder
        return out
    write_table(read_table(data / "queries.parquet", QUERIES).slice(0, n), out, QUERIES)
    return out


# ---------------------------------------------------------------------------------------------
# Fits


def fit_growth(x: list[float], y: list[float]) -> dict:
    """Power law y = a x^b (log-log least squares), linear y = c + d x and y = c + d x log x.

    Each model's relative RMS error on the points; extrapolate with `predict`.
    """
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    out: dict = {}
    if len(xs) >= 2 and (ys > 0).all():
        b, log_a = np.polyfit(np.log(xs), np.log(ys), 1)
        pred = np.exp(log_a) * xs**b
        out["power"] = {"a": float(np.exp(log_a)), "b": float(b), "rel_rmse": _rel_rmse(pred, ys)}
    for name, feature in (("linear", xs), ("nlogn", xs * np.log(xs))):
        if len(xs) >= 2:
            d, c = np.polyfit(feature, ys, 1)
            out[name] = {"c": float(c), "d": float(d), "rel_rmse": _rel_rmse(c + d * feature, ys)}
    return out


def _rel_rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(((pred - y) / y) ** 2)))


def predict(fit: dict, x: float) -> dict[str, float]:
    out = {}
    if "power" in fit:
        out["power"] = fit["power"]["a"] * x ** fit["power"]["b"]
    if "linear" in fit:
        out["linear"] = fit["linear"]["c"] + fit["linear"]["d"] * x
    if "nlogn" in fit:
        out["nlogn"] = fit["nlogn"]["c"] + fit["nlogn"]["d"] * x * math.log(x)
    return out


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="corpus sizes (passages)")
    parser.add_argument("--queries", type=int, default=2000, help="queries retrieved per corpus size")
    parser.add_argument(
        "--bm25-queries",
        default="2000,10000",
        help="query counts of the bm25 stage on the smallest corpus (its per-query memory and time)",
    )
    parser.add_argument("--mine-queries", default="2000,10000,30000", help="queries of the runs mined")
    parser.add_argument("--eval-queries", default="1000,3000,6980", help="queries of the runs evaluated")
    parser.add_argument("--numba", default="1,2", help="numba retrieval thread counts ('' to skip)")
    parser.add_argument("--keep", help="generate into this folder and keep it (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    bm25_queries = sorted(int(s) for s in args.bm25_queries.split(",") if s)
    mine_queries = {int(s) for s in args.mine_queries.split(",") if s}
    eval_queries = {int(s) for s in args.eval_queries.split(",") if s}
    numba_threads = [int(t) for t in args.numba.split(",") if t]
    variants = [["numpy", 0], ["numpy", 2]] + [["numba", t] for t in numba_threads]

    started = time.perf_counter()
    stats = fit_statistics(POOL, args.seed)
    v = choose_vocabulary(stats)
    rng = np.random.default_rng(args.seed)
    words, cdf = vocabulary(stats, v, rng)
    data_stats = {
        k: stats[k]
        for k in (
            "pool_passages",
            "pool_tokens",
            "pool_types",
            "mean_words_per_passage",
            "mean_bytes_per_line",
            "zipf_s",
            "zipf_q",
            "heaps_k",
            "heaps_beta",
            "pool_word_types",
            "target_word_types_8m8",
        )
        if k in stats
    }
    data_stats.update(vocabulary_size=v, mean_query_words=float(stats["query_lengths"].mean()))
    print(f"data: {json.dumps(data_stats)}  ({time.perf_counter() - started:.0f} s)", flush=True)

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lead-scale-", dir="/tmp"))
    log = tmp / "children.log"
    rows: list[dict] = []
    try:
        num_generated = max([args.queries, *bm25_queries])
        for n in sizes:
            src = tmp / f"src-{n}"
            data = tmp / f"data-{n}"
            generated = tmp / f"generated-{n}.json"
            counts = [args.queries] + (
                [q for q in bm25_queries if q != args.queries] if n == sizes[0] else []
            )
            bm25_args = {}  # (queries, with the TREC file) -> the child's arguments
            for q in counts:
                for trec in (True, False) if n == sizes[0] else (True,):
                    bm25_args[q, trec] = {
                        "stage": "bm25",
                        "data": str(data),
                        "queries": str(tmp / f"queries-{n}-{q}.parquet"),
                        "out": str(tmp / f"bm25-{n}-{q}{'' if trec else '-notrec'}"),
                        "k": RUN_DEPTH,
                        "negatives": NEGATIVES,
                        "variants": variants if q == args.queries and trec else [],
                        **({} if trec else {"trec": False}),
                    }
            index_dir = tmp / f"index-{n}"
            role_args = {
                "bm25-index": {
                    "stage": "bm25-role",
                    "config": {
                        "corpus": str(data / "corpus.parquet"),
                        "queries": str(data / "queries.parquet"),
                        "out_index": str(index_dir),
                    },
                },
                "bm25-shard": {
                    "stage": "bm25-role",
                    "config": {
                        "corpus": str(data / "corpus.parquet"),
                        "queries": str(tmp / f"queries-{n}-{args.queries}.parquet"),
                        "qrels": str(data / "qrels.parquet"),
                        "index": str(index_dir),
                        "out_run": str(tmp / f"shard-{n}" / "run.parquet"),
                        "out_groups": str(tmp / f"shard-{n}" / "groups.parquet"),
                        "k": RUN_DEPTH,
                        "num_negatives": NEGATIVES,
                        "threads": -1,
                    },
                },
            }
            ingest_args = {"stage": "ingest", "source": str(src), "out": str(data)}
            # A rerun into the same --keep folder regenerates a corpus only for measurements it lacks.
            needed = [*bm25_args.values(), *role_args.values()]
            missing = not data.exists() and not all(cached(a, log) for a in needed)
            if missing or not generated.exists():
                if not src.exists():
                    t0 = time.perf_counter()
                    gen = generate(src, n, num_generated, stats, words, cdf, args.seed + n)
                    gen["generate_s"] = time.perf_counter() - t0
                    generated.write_text(json.dumps(gen))
                if data.exists():
                    shutil.rmtree(data)
                measure(ingest_args, log, reuse=False)
            gen = json.loads(generated.read_text())
            print(
                f"{n:,} passages generated in {gen['generate_s']:.0f} s ({gen['collection_bytes'] / n:.0f} B/line)",
                flush=True,
            )
            row = {"passages": n, **gen}
            row["ingest"] = measure(ingest_args, log)
            if src.exists():
                shutil.rmtree(src)  # the Parquet corpus is what the other stages read
            print(f"  ingest: {_brief(row['ingest'])}", flush=True)
            row["bm25"], row["bm25_without_trec"] = {}, {}
            for (q, trec), child in bm25_args.items():
                subset_queries(data, q, Path(child["queries"]))
                Path(child["out"]).mkdir(exist_ok=True)
                r = measure(child, log)
                (row["bm25"] if trec else row["bm25_without_trec"])[str(q)] = r
                print(
                    f"  bm25 {q} queries{'' if trec else ' (no TREC file)'}: index {r['index']['wall_s']:.1f} s, "
                    f"retrieve {r['retrieve']['wall_s']:.1f} s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB; "
                    f"variants {r.get('variants')}",
                    flush=True,
                )
                if Path(child["out"]).exists():
                    shutil.rmtree(child["out"])
            # The sharded path: the index built and saved once, a shard loading it (no TREC file).
            if not index_dir.exists() and not cached(role_args["bm25-shard"], log):
                row["bm25-index"] = measure(role_args["bm25-index"], log, reuse=False)
            row["bm25-index"] = measure(role_args["bm25-index"], log)
            (tmp / f"shard-{n}").mkdir(exist_ok=True)
            row["bm25-shard"] = measure(role_args["bm25-shard"], log)
            for role in ("bm25-index", "bm25-shard"):
                print(f"  {role}: {_brief(row[role])}", flush=True)
            shutil.rmtree(tmp / f"shard-{n}", ignore_errors=True)
            row["bm25_vocabulary"] = row["bm25"][str(args.queries)]["vocabulary"]
            if not args.keep:
                shutil.rmtree(data)
            rows.append(row)

        query_rows = []
        for q in sorted(mine_queries | eval_queries):
            folder = tmp / f"run-{q}"
            run_path, qrels_path = folder / "run.parquet", folder / "qrels.parquet"
            children = {}
            if q in mine_queries:
                config = {
                    "run": str(run_path),
                    "qrels": str(qrels_path),
                    "out_groups": str(folder / "groups.parquet"),
                }
                children["mine"] = {
                    "stage": "mine",
                    "config": {**config, "depth": MINE_DEPTH, "num_negatives": NEGATIVES},
                }
            if q in eval_queries:
                config = {"run": str(run_path), "qrels": str(qrels_path), "metrics": METRICS}
                children["evaluate"] = {
                    "stage": "evaluate",
                    "config": {**config, "out": str(folder / "metrics.json"), "json": True},
                }
            if not all(cached(c, log) for c in children.values()):
                synthetic_run(folder, q, MSMARCO_PASSAGES, args.seed + q)
            qrow = {"queries": q, "run_rows": q * RUN_DEPTH}
            for stage, child in children.items():
                qrow[stage] = measure(child, log)
                print(f"  {stage} {q} x {RUN_DEPTH}: {_brief(qrow[stage])}", flush=True)
            if folder.exists():
                shutil.rmtree(folder)
            query_rows.append(qrow)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    result = summarize(rows, query_rows, args, data_stats, time.perf_counter() - started)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print_table(result)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def summarize(rows: list[dict], query_rows: list[dict], args, data_stats: dict, total_s: float) -> dict:
    """Per-stage series, their fits, and the stages extrapolated to 8.8M passages / 500k (6,980) queries."""
    q = args.queries
    n = [r["passages"] for r in rows]
    series: dict[str, dict] = {}

    def point(m: dict, **over) -> dict:
        p = {k: m[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes")}
        return {**p, **over, "load": [m["load_before"][0], m["load_after"][0]]}

    def add(name: str, x: list[float], points: list[dict], unit: str, target: float, note: str) -> None:
        entry = {"x": x, "unit": unit, "points": points, "target_x": target, "note": note}
        for key in ("wall_s", "cpu_s", "peak_rss_bytes"):
            entry[f"fit_{key}"] = fit = fit_growth(x, [p[key] for p in points])
            entry[f"at_target_{key}"] = predict(fit, target)
        series[name] = entry

    add("ingest", n, [point(r["ingest"]) for r in rows], "passages", MSMARCO_PASSAGES, "train split")
    stage = [r["bm25"][str(q)] for r in rows]
    backend = stage[0]["backend"]
    search_key = "numba-1" if backend == "numba" else "numpy-0"  # what the stage's threads=0 runs
    add(
        "bm25 index",
        n,
        [point(b, **b["index"]) for b in stage],
        "passages",
        MSMARCO_PASSAGES,
        "tokenize (stopwords en, Snowball english) + bm25s index; peak at the end of the build",
    )
    add(
        "bm25 search (per query)",
        n,
        [
            point(
                b,
                wall_s=b["variants"][search_key]["wall_s"] / q,
                cpu_s=b["variants"][search_key]["cpu_s"] / q,
            )
            for b in stage
        ],
        "passages",
        MSMARCO_PASSAGES,
        f"top-{RUN_DEPTH}, bm25s {search_key} after warm-up, {q} queries; peak = the whole bm25 stage's",
    )
    add(
        "bm25 stage",
        n,
        [point(b) for b in stage],
        "passages",
        MSMARCO_PASSAGES,
        f"the whole stage (index, {q} queries, run.parquet + run.trec + groups.parquet)",
    )
    for role, note in (
        ("bm25-index", "the bm25-index component: build and save the index"),
        ("bm25-shard", f"the bm25-shard component: load the index, {q} queries, threads -1, no TREC file"),
    ):
        if all(role in r for r in rows):
            add(f"{role} role", n, [point(r[role]) for r in rows], "passages", MSMARCO_PASSAGES, note)
    by_q = sorted(rows[0]["bm25"].values(), key=lambda b: b["summary"]["num_queries"])
    add(
        "bm25 stage vs queries",
        [b["summary"]["num_queries"] for b in by_q],
        [point(b) for b in by_q],
        "queries",
        MSMARCO_TRAIN_QUERIES,
        f"the whole stage on the {rows[0]['passages']:,}-passage corpus",
    )
    by_q = sorted(rows[0]["bm25_without_trec"].values(), key=lambda b: b["summary"]["num_queries"])
    if len(by_q) >= 2:
        add(
            "bm25 stage vs queries, no TREC file",
            [b["summary"]["num_queries"] for b in by_q],
            [point(b) for b in by_q],
            "queries",
            MSMARCO_TRAIN_QUERIES,
            "as above without out_trec (what a query shard writes)",
        )
    mined = [r for r in query_rows if "mine" in r]
    evaluated = [r for r in query_rows if "evaluate" in r]
    add(
        "mine",
        [r["queries"] for r in mined],
        [point(r["mine"]) for r in mined],
        "queries",
        MSMARCO_TRAIN_QUERIES,
        f"top-{RUN_DEPTH} run, depth {MINE_DEPTH}, {NEGATIVES} negatives",
    )
    add(
        "evaluate",
        [r["queries"] for r in evaluated],
        [point(r["evaluate"]) for r in evaluated],
        "queries",
        MSMARCO_DEV_QUERIES,
        f"top-{RUN_DEPTH} run, " + ",".join(METRICS),
    )

    # The bm25 stage at full size, one task: index at 8.8M + the fixed cost (numba compile, reading)
    # + per query: the search cost at 8.8M and the writing cost (run, TREC file, groups) measured as
    # the stage's slope over queries on the small corpus minus its search cost there.
    sq = series["bm25 stage vs queries"]
    slope_cpu = sq["fit_cpu_s"]["linear"]["d"]
    slope_mem = sq["fit_peak_rss_bytes"]["linear"]["d"]
    search_small = series["bm25 search (per query)"]["points"][0]["cpu_s"]
    write_cpu = max(0.0, slope_cpu - search_small)
    fixed_cpu = sq["fit_cpu_s"]["linear"]["c"] - series["bm25 index"]["points"][0]["cpu_s"]
    search_full = max(series["bm25 search (per query)"]["at_target_cpu_s"].values())
    index_full = max(series["bm25 index"]["at_target_cpu_s"].values())
    index_mem = max(series["bm25 stage"]["at_target_peak_rss_bytes"].values())

    # Memory per query without the TREC file (the run is streamed; the groups' negatives are kept),
    # and per run row of the TREC export (it reads, sorts and writes the whole run at once).
    no_trec = series.get("bm25 stage vs queries, no TREC file")
    query_mem = no_trec["fit_peak_rss_bytes"]["linear"]["d"] if no_trec else slope_mem
    trec_row_mem = (slope_mem - query_mem) / RUN_DEPTH

    def bm25_task(queries: int) -> dict:
        cpu = index_full + fixed_cpu + queries * (search_full + write_cpu)
        return {
            "queries": queries,
            "cpu_s": cpu,
            "search_cpu_s": queries * search_full,
            "write_cpu_s": queries * write_cpu,
            "peak_rss_bytes": index_mem + queries * slope_mem,
        }

    full = {
        "coefficients": {
            "bm25_write_cpu_s_per_query": write_cpu,
            "bm25_fixed_cpu_s": fixed_cpu,
            "bm25_search_cpu_s_per_query_at_target": search_full,
            "bm25_stage_bytes_per_query": slope_mem,
            "bm25_stage_bytes_per_query_without_trec": query_mem,
            "bm25_trec_export_bytes_per_run_row": trec_row_mem,
        },
        "bm25_train": bm25_task(MSMARCO_TRAIN_QUERIES),
        "bm25_eval": bm25_task(MSMARCO_DEV_QUERIES),
        # the merge of sharded runs writes the TREC file of all of them
        "bm25_merge_trec_peak_rss_bytes": MSMARCO_TRAIN_QUERIES * RUN_DEPTH * trec_row_mem,
    }

    # lead_core.resources.PEAK_MODELS: linear fits of the peak RSS (bytes) in the sizes that drive it.
    def linear(name: str) -> tuple[float, float]:
        fit = series[name]["fit_peak_rss_bytes"]["linear"]
        return fit["c"], fit["d"]

    bm25_c, bm25_per_passage = linear("bm25 index")
    mine_c, mine_per_query = linear("mine")
    eval_c, eval_per_query = linear("evaluate")
    ingest_c, ingest_per_passage = linear("ingest")
    peak_models = {
        "ingest": {"base": ingest_c, "per_passage": ingest_per_passage},
        "bm25": {
            # the index build's peak, plus the retrieval's growth on top (a little conservative)
            "base": bm25_c,
            "per_passage": bm25_per_passage,
            "per_query": query_mem,
            "per_run_row": trec_row_mem,  # rows of the TREC file written (queries x k), else 0
        },
        "mine": {"base": mine_c, "per_run_row": mine_per_query / RUN_DEPTH},
        "evaluate": {"base": eval_c, "per_run_row": eval_per_query / RUN_DEPTH},
    }
    if "bm25-shard role" in series:
        shard_c, shard_per_passage = linear("bm25-shard role")
        peak_models["bm25-shard"] = {
            "base": shard_c - q * query_mem,
            "per_passage": shard_per_passage,
            "per_query": query_mem,
            "per_run_row": trec_row_mem,
        }
    variants: dict[str, list] = {}
    for r in rows:
        for name, v in r["bm25"][str(q)].get("variants", {}).items():
            entry = {"passages": r["passages"]}
            if "cpu_s" in v:
                entry.update(
                    queries_per_s=v["queries"] / v["wall_s"], queries_per_cpu_s=v["queries"] / v["cpu_s"]
                )
            else:
                entry.update(v)
            variants.setdefault(name, []).append(entry)
    return {
        "benchmark": "scale",
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        },
        "data": data_stats,
        "bm25_backend": backend,
        "queries": q,
        "targets": {
            "passages": MSMARCO_PASSAGES,
            "train_queries": MSMARCO_TRAIN_QUERIES,
            "dev_queries": MSMARCO_DEV_QUERIES,
        },
        "total_s": total_s,
        "corpus_rows": rows,
        "query_rows": query_rows,
        "series": series,
        "retrieval_variants": variants,
        "full_size": full,
        "peak_models": peak_models,
    }


def plot(result: dict, path: Path) -> None:
    """Cost against size, log-log; dotted: the linear fit c + d x extrapolated to the target size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["series"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))

    def draw(ax, name: str, key: str, scale: float, label: str, marker: str = "o-") -> None:
        s = series[name]
        b = s[f"fit_{key}"].get("power", {}).get("b", float("nan"))
        ax.loglog(s["x"], [p[key] * scale for p in s["points"]], marker, label=f"{label} (b={b:.2f})")
        lin = s[f"fit_{key}"].get("linear")
        if lin:
            xt = np.geomspace(min(s["x"]), s["target_x"], 30)
            yt = (lin["c"] + lin["d"] * xt) * scale
            ax.loglog(xt[yt > 0], yt[yt > 0], ":", color=ax.lines[-1].get_color())

    for col, key, label, scale in (
        (0, "cpu_s", "CPU seconds (user+sys)", 1.0),
        (1, "peak_rss_bytes", "peak RSS (GiB)", 1 / 2**30),
    ):
        ax = axes[0, col]
        draw(ax, "ingest", key, scale, "ingest")
        draw(ax, "bm25 index", key, scale, "bm25 index")
        if key == "cpu_s":
            draw(ax, "bm25 search (per query)", key, 1000.0, "bm25 search, ms CPU/query", "s-")
        else:
            draw(ax, "bm25 stage", key, scale, f"bm25 stage, {result['queries']} queries", "s-")
            if "bm25-shard role" in series:
                draw(ax, "bm25-shard role", key, scale, "bm25 shard (loaded index)", "^-")
        ax.axvline(result["targets"]["passages"], color="grey", lw=0.8)
        ax.set_xlabel("passages (grey: 8.8M)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1, col]
        for name in ("mine", "evaluate", "bm25 stage vs queries", "bm25 stage vs queries, no TREC file"):
            if name in series:
                draw(ax, name, key, scale, name)
        ax.axvline(result["targets"]["train_queries"], color="grey", lw=0.8)
        ax.axvline(result["targets"]["dev_queries"], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("queries of a top-1000 run (grey: 500k train, dashed: 6,980 dev)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("lead_core CPU stages on synthetic MS MARCO-like data (2-core shared machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(result: dict) -> None:
    print(f"\n{'stage':<28} {'size':>10} {'wall s':>9} {'CPU s':>9} {'peak GiB':>9} {'load':>11}")
    for name, s in result["series"].items():
        for x, p in zip(s["x"], s["points"]):
            wall, cpu = p["wall_s"], p["cpu_s"]
            fmt = ".4f" if "per query" in name else ".1f"
            print(
                f"{name:<28} {x:>10,} {wall:>9{fmt}} {cpu:>9{fmt}} {p['peak_rss_bytes'] / 2**30:>9.2f} "
                f"{p['load'][0]:>5.1f}-{p['load'][1]:<5.1f}"
            )
    print(
        f"\n{'stage':<28} {'b(CPU)':>7} {'b(RSS)':>7}  {'at target':>10} {'CPU s (power/linear)':>24} {'peak GiB (power/linear)':>24}"
    )
    for name, s in result["series"].items():
        c, m = s["at_target_cpu_s"], s["at_target_peak_rss_bytes"]
        print(
            f"{name:<28} {s['fit_cpu_s'].get('power', {}).get('b', float('nan')):>7.2f} "
            f"{s['fit_peak_rss_bytes'].get('power', {}).get('b', float('nan')):>7.2f}  {s['target_x']:>10,} "
            f"{c.get('power', float('nan')):>11.4g}/{c.get('linear', float('nan')):<12.4g} "
            f"{m.get('power', float('nan')) / 2**30:>11.2f}/{m.get('linear', float('nan')) / 2**30:<12.2f}"
        )
    for task in ("bm25_train", "bm25_eval"):
        t = result["full_size"][task]
        print(
            f"{task} (one task, {t['queries']:,} queries, 8.8M passages): {t['cpu_s'] / 3600:.1f} CPU-h "
            f"(search {t['search_cpu_s'] / 3600:.1f} h, writing {t['write_cpu_s'] / 3600:.1f} h), "
            f"peak {t['peak_rss_bytes'] / 2**30:.1f} GiB"
        )
    for name, pts in result["retrieval_variants"].items():
        print(
            f"retrieval {name}: "
            + "; ".join(
                f"{p['passages']:,}: {p.get('queries_per_s', 0):.0f} q/s, {p.get('queries_per_cpu_s', 0):.0f} q/CPU-s"
                if "queries_per_s" in p
                else f"{p['passages']:,}: {p.get('error')}"
                for p in pts
            )
        )


if __name__ == "__main__":
    sys.exit(main())
