"""Exact top-k search speed: Q queries against N x 768 float16 vectors (the search stage's path).

Backends:
  - faiss:  what `lead search` runs: IndexFlatIP through `search.search_batches`; on a GPU the
            index is held in float16 (GpuIndexFlatIP, useFloat16), on CPU in float32.
  - torch:  the search stage's torch path (lead_core.search.exact): chunked matmul (fp16 with fp32
            accumulation on GPU, fp32 on CPU) + a running top-k.
Vectors are random (search time does not depend on their values); the top-10 of the two
backends are compared on the first queries as a sanity check.

Profiles:
  gpu: 6,980 queries x 8.8M vectors, k=1000 (MS MARCO dev); issue 4's target: ≤ 1 s on one H100.
  cpu: 1,000 queries x 200,000 vectors, k=1000 (scaled to this 2-core machine).

    python benchmarks/search_speed.py [--profile cpu|gpu] [--queries Q] [--docs N] [--k K]

Writes benchmarks/results/search_speed_<profile>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lead_core import search  # noqa: E402
from lead_core.search.exact import exact_topk  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PROFILES = {
    "gpu": {"queries": 6_980, "docs": 8_841_823, "dim": 768, "k": 1000},
    "cpu": {"queries": 1_000, "docs": 200_000, "dim": 768, "k": 1000},
}
CHUNK = 1_000_000  # documents generated / searched per chunk


def random_docs(num: int, dim: int, device: torch.device, seed: int = 0):
    """Yield [<=CHUNK, dim] float16 chunks of random unit-ish vectors on `device`."""
    gen = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, num, CHUNK):
        n = min(CHUNK, num - start)
        yield (torch.randn(n, dim, generator=gen, device=device) / dim**0.5).half()


def build_faiss(num: int, dim: int, device: torch.device):
    import faiss

    if device.type == "cuda":
        if not search.gpu_available():
            return None
        resources = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.useFloat16 = True
        config.device = device.index or 0
        index = faiss.GpuIndexFlatIP(resources, dim, config)
        index.lead_resources = resources
    else:
        index = faiss.IndexFlatIP(dim)
    for chunk in random_docs(num, dim, device):
        index.add(chunk.float().cpu().numpy())
    return index


def faiss_search(index, queries: np.ndarray, k: int, batch_size: int):
    blocks = list(search.search_batches(index, queries, k, batch_size=batch_size, progress=False))
    return np.concatenate([b[1] for b in blocks]), np.concatenate([b[2] for b in blocks])


def random_corpus(num: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[num, dim] random vectors in `dtype` on `device` (random_docs' chunks, filled in place)."""
    corpus = torch.empty((num, dim), dtype=dtype, device=device)
    start = 0
    for chunk in random_docs(num, dim, device):
        corpus[start : start + len(chunk)] = chunk.to(dtype)
        start += len(chunk)
    return corpus


def torch_search(docs: torch.Tensor, queries: torch.Tensor, k: int, query_batch: int):
    """The search stage's torch path (lead_core.search.exact) over query batches."""
    parts = [exact_topk(docs, queries[s : s + query_batch], k) for s in range(0, len(queries), query_batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="gpu" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--queries", type=int)
    parser.add_argument("--docs", type=int)
    parser.add_argument("--k", type=int)
    parser.add_argument(
        "--batch-size", type=int, default=4096, help="queries per faiss search call (the stage's default)"
    )
    parser.add_argument("--torch-query-batch", type=int, default=1024)
    parser.add_argument("--backends", default="faiss,torch")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats; the best is reported")
    args = parser.parse_args(argv)
    p = PROFILES[args.profile]
    nq, nd, dim, k = args.queries or p["queries"], args.docs or p["docs"], p["dim"], args.k or p["k"]
    device = torch.device("cuda" if args.profile == "gpu" else "cpu")
    gen = torch.Generator(device=device).manual_seed(1)
    queries = (torch.randn(nq, dim, generator=gen, device=device) / dim**0.5).half()

    rows, tops = [], {}
    for backend in args.backends.split(","):
        start = time.perf_counter()
        if backend == "faiss":
            index = build_faiss(nd, dim, device)
            if index is None:
                rows.append({"backend": backend, "note": "faiss has no GPU here (faiss-gpu not installed)"})
                continue
            q = queries.float().cpu().numpy()

            def fn(index=index, q=q):
                return faiss_search(index, q, k, args.batch_size)

            setting = "IndexFlatIP " + ("fp16 on GPU" if device.type == "cuda" else "fp32 on CPU")
        else:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            docs = random_corpus(nd, dim, device, dtype)
            q = queries.to(dtype)

            def fn(docs=docs, q=q):
                return torch_search(docs, q, k, args.torch_query_batch)

            setting = f"matmul+topk {str(dtype).replace('torch.', '')}"
        build_s = time.perf_counter() - start
        best, cpu_best = float("inf"), float("inf")
        for _ in range(args.repeats):
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            scores, ids = fn()
            sync(device)
            best = min(best, time.perf_counter() - wall)
            cpu_best = min(cpu_best, time.process_time() - cpu)
        ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else ids
        tops[backend] = ids[:50, :10]
        rows.append(
            {
                "backend": backend,
                "setting": setting,
                "seconds": round(best, 3),
                "cpu_seconds": round(cpu_best, 3),
                "queries_per_s": round(nq / best, 1),
                "build_seconds": round(build_s, 1),
            }
        )
        del fn
        if device.type == "cuda":
            torch.cuda.empty_cache()
    agreement = None
    if len(tops) == 2:
        a, b = tops.values()
        agreement = float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))

    device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    result = {
        "profile": args.profile,
        "device": device_name,
        "queries": nq,
        "docs": nd,
        "dim": dim,
        "k": k,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "top10_agreement": agreement,
    }
    print(
        f"search speed, profile {args.profile}: {nq} queries x {nd} x {dim} vectors, top-{k}, on {device_name}"
    )
    print(f"{'backend':8} {'setting':24} {'seconds':>9} {'CPU-s':>8} {'queries/s':>10}")
    for r in rows:
        if "note" in r:
            print(f"{r['backend']:8} {r['note']}")
        else:
            print(
                f"{r['backend']:8} {r['setting']:24} {r['seconds']:>9.3f} {r['cpu_seconds']:>8.2f} {r['queries_per_s']:>10.1f}"
            )
    if agreement is not None:
        print(f"top-10 agreement faiss vs torch on 50 queries: {agreement:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"search_speed_{args.profile}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
