"""The GPU check of issue 11: encode, LEAD step and exact search speed on one GPU, next to the naive
paths, in one run that writes one JSON and one Markdown table.

Rows (each with its peak GPU memory and the target it is held to; H100 figures measured earlier):
  encode, 12-layer 768-d BERT-shaped encoder (random weights), MS MARCO passages (~75 tokens, at
      most 160): lead_core's encode path (length-sorted batches of 1024, bf16 autocast) next to
      sentence-transformers' `encode` (batch 32, fp32) on the first of the same texts.
      Target >= 25,000 passages/s (sentence-transformers measured ~2,400).
  encode, all-MiniLM-L6-v2-shaped encoder (6 layers, 384-d, random weights), SciFact passages
      (title + abstract, at most 256 tokens): the same two paths. Target >= 20,000/s (naive ~2,200).
  LEAD step, 12-layer MPNet-shaped ColBERT teacher -> 6-layer MiniLM-shaped DE student, 32 queries
      x 8 passages, K=5, joint training, bf16: `lead_core.train.run` (only the selected layers and
      the last are scored) next to a plain PyTorch step scoring all layers of both models and one
      scoring the selected layers (benchmarks/train_step.py). Target >= 400 queries/s (naive 189).
  search, exact top-1000 of 6,980 queries over 8,841,823 x 768 random fp16 vectors with the torch
      path (lead_core.search.exact; fp32 accumulation), for a few block sizes; its top-1000 is
      checked against an fp32 reference on 32 queries. Target <= 1.0 s (torch matmul + top-k: 1.38 s).

Texts: the MS MARCO passages of the DL19/DL20 pools and the SciFact corpus, from --data (a
datasets folder holding msmarco-dl19-dl20-pools/collection.tsv.gz and scifact/corpus.jsonl.gz;
default ../shared/datasets, or .gpu_check_data/datasets where benchmarks/gpu_check.sh prepared it).

    python benchmarks/gpu_check.py                 # on a GPU: the full check (< 8 min on one H200)
    python benchmarks/gpu_check.py --dry-run       # tiny models and sizes on CPU: checks it runs
    python benchmarks/gpu_check.py --sections encode,search

Writes benchmarks/results/gpu_check.{json,md} (--dry-run: gpu_check_dryrun.{json,md}); --out DIR
writes there instead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # the checkout's lead_core
sys.path.insert(0, str(BENCH))  # the other benchmarks, reused below

import encode_speed  # noqa: E402
import search_speed  # noqa: E402
import train_step  # noqa: E402

from lead_core.encode import encode_texts, token_lengths  # noqa: E402
from lead_core.models import ModelConfig, build_model  # noqa: E402
from lead_core.search.exact import exact_topk  # noqa: E402

DATA_CANDIDATES = (REPO.parent / "shared" / "datasets", REPO / ".gpu_check_data" / "datasets")

# Sizes: the check on a GPU, and --dry-run (tiny, CPU, < 2 min on a shared 2-core machine).
FULL = {
    "encode": [
        dict(
            name="encode 12L-768d, MS MARCO",
            texts="msmarco",
            shape=dict(family="bert", layers=12, hidden=768, heads=12, intermediate=3072),
            max_length=160,
            count=100_000,
            reference_count=20_000,
            batch_size=1024,
            target=25_000,
            naive="~2,400/s (H100)",
        ),
        dict(
            name="encode MiniLM-L6 (6L-384d), SciFact",
            texts="scifact",
            shape=dict(family="bert", layers=6, hidden=384, heads=12, intermediate=1536),
            max_length=256,
            count=51_830,  # the corpus 10 times
            reference_count=10_366,
            batch_size=1024,
            target=20_000,
            naive="~2,200/s (H100)",
        ),
    ],
    "train": dict(profile=train_step.PROFILES["gpu"], steps=20, warmup=5, target=400, naive="189 q/s (H100)"),
    "search": dict(
        queries=6_980,
        docs=8_841_823,
        dim=768,
        k=1000,
        # (query block, corpus block): the score matrix is query x corpus block fp32 (1.1-29 GB).
        blocks=[(8192, 262_144), (8192, 1_048_576), (2048, 1_048_576), (2048, 4_194_304)],
        repeats=3,
        check_queries=32,
        target=1.0,
        naive="1.38 s (H100, torch matmul + top-k)",
    ),
}
DRY = {
    "encode": [
        dict(
            name="encode 2L-32d (tiny), MS MARCO",
            texts="msmarco",
            shape=dict(family="bert", layers=2, hidden=32, heads=2, intermediate=64),
            max_length=160,
            count=256,
            reference_count=128,
            batch_size=64,
            target=25_000,
            naive="~2,400/s (H100)",
        ),
        dict(
            name="encode 2L-32d (tiny), SciFact",
            texts="scifact",
            shape=dict(family="bert", layers=2, hidden=32, heads=2, intermediate=64),
            max_length=256,
            count=128,
            reference_count=64,
            batch_size=64,
            target=20_000,
            naive="~2,200/s (H100)",
        ),
    ],
    "train": dict(
        profile=dict(
            teacher=dict(family="mpnet", layers=4, hidden=32, heads=2, intermediate=64),
            student=dict(family="bert", layers=3, hidden=32, heads=2, intermediate=64),
            queries=4,
            group=4,
            query_len=16,
            passage_len=32,
            k=2,
            precision="fp32",
        ),
        steps=3,
        warmup=1,
        target=400,
        naive="189 q/s (H100)",
    ),
    "search": dict(
        queries=200,
        docs=50_000,
        dim=64,
        k=100,
        blocks=[(256, 16_384), (64, 65_536)],
        repeats=2,
        check_queries=8,
        target=1.0,
        naive="1.38 s (H100, torch matmul + top-k)",
    ),
}


# ------------------------------------------------------------------------------------ helpers
def find_data(explicit: str | None) -> Path:
    for root in [Path(explicit)] if explicit else DATA_CANDIDATES:
        if (root / "msmarco-dl19-dl20-pools" / "collection.tsv.gz").is_file():
            return root
    raise SystemExit(
        f"no datasets folder with msmarco-dl19-dl20-pools/collection.tsv.gz and scifact/corpus.jsonl.gz "
        f"at {explicit or ', '.join(map(str, DATA_CANDIDATES))}: pass --data, or run "
        "benchmarks/gpu_check.sh prepare on a machine that has them"
    )


def scifact_passages(data: Path, count: int) -> list[str]:
    """`count` SciFact passages (title + abstract, as lead_core.data.text joins them), cycled."""
    from lead_core.data.text import passage_text

    with gzip.open(data / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    texts = [passage_text(d.get("title", ""), d.get("text", "")) for d in docs]
    return [texts[i % len(texts)] for i in range(count)]


def texts_for(kind: str, data: Path, count: int) -> list[str]:
    if kind == "msmarco":
        encode_speed.COLLECTION = data / "msmarco-dl19-dl20-pools" / "collection.tsv.gz"
        return encode_speed.msmarco_passages(count)
    return scifact_passages(data, count)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured(fn: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    """(wall seconds, peak GPU memory in GiB or None on CPU) of fn(), synchronised."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


def row(check, path, value, unit, target, naive, peak, **extra) -> dict:
    if value is None:
        meets = None
    else:
        value = float(value)
        meets = bool(value <= target if unit == "s" else value >= target)
    return dict(
        check=check,
        path=path,
        value=None if value is None else round(value, 3),
        unit=unit,
        target=target,
        target_op="<=" if unit == "s" else ">=",
        naive_measured=naive,
        peak_gpu_gib=None if peak is None else round(peak, 2),
        meets_target=meets,
        **extra,
    )


def skipped(check, path, unit, target, naive, why: str) -> dict:
    return row(check, path, None, unit, target, naive, None, note=f"skipped: {why}")


# ------------------------------------------------------------------------------------ sections
def check_encode(spec: dict, data: Path, device: torch.device, tmp: Path, dry: bool) -> list[dict]:
    """lead_core's encode path vs sentence-transformers' encode on the same texts."""
    backbone = train_step.shaped_backbone(tmp / spec["name"].split(",")[0].replace(" ", "_"), **spec["shape"])
    model = build_model(
        ModelConfig("de", str(backbone), pooling="mean", passage_max_length=spec["max_length"])
    )
    model = model.to(device).eval()
    texts = texts_for(spec["texts"], data, spec["count"])
    tokens = token_lengths(model, texts[:5000], spec["max_length"])
    encode_texts(model, texts[:2048], is_query=False, batch_size=spec["batch_size"], device=device)  # warm-up
    seconds, peak = measured(
        lambda: encode_texts(model, texts, is_query=False, batch_size=spec["batch_size"], device=device),
        device,
    )
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    common = dict(
        texts=spec["texts"],
        mean_tokens=round(float(tokens.mean()), 1),
        max_tokens=int(tokens.max()),
        model_shape=spec["shape"],
    )
    rows = [
        row(
            spec["name"],
            f"lead_core encode_texts ({precision}, length-sorted batches of {spec['batch_size']})",
            len(texts) / seconds,
            "passages/s",
            spec["target"],
            spec["naive"],
            peak,
            passages=len(texts),
            seconds=round(seconds, 3),
            **common,
        )
    ]
    model = None  # free the GPU for the reference
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        rows.append(
            skipped(
                spec["name"],
                "sentence-transformers encode",
                "passages/s",
                spec["target"],
                spec["naive"],
                "not installed",
            )
        )
        return rows
    st = SentenceTransformer(
        str(backbone), device=str(device)
    )  # a plain HF folder: Transformer + mean pooling
    st.max_seq_length = spec["max_length"]
    subset = texts[: spec["reference_count"]]
    st.encode(subset[:256], batch_size=32, show_progress_bar=False)  # warm-up
    seconds, peak = measured(lambda: st.encode(subset, batch_size=32, show_progress_bar=False), device)
    rows.append(
        row(
            spec["name"],
            "sentence-transformers encode (fp32, batch 32: the naive path)",
            len(subset) / seconds,
            "passages/s",
            spec["target"],
            spec["naive"],
            peak,
            passages=len(subset),
            seconds=round(seconds, 3),
            sentence_transformers=__import__("sentence_transformers").__version__,
            **common,
        )
    )
    return rows


def check_train(spec: dict, device: torch.device, tmp: Path) -> list[dict]:
    """lead_core's trainer step vs plain PyTorch steps (benchmarks/train_step.py's variants)."""
    profile = spec["profile"]
    teacher_backbone = train_step.shaped_backbone(tmp / "teacher-backbone", **profile["teacher"])
    student_dir = train_step.shaped_backbone(tmp / "student-backbone", **profile["student"])
    teacher_dir = tmp / "teacher"
    build_model(
        ModelConfig(
            "cb",
            str(teacher_backbone),
            query_max_length=profile["query_len"],
            passage_max_length=profile["passage_len"],
        )
    ).save(teacher_dir)
    paths = train_step.write_data(
        tmp / "data", profile["queries"] * (spec["warmup"] + spec["steps"] + 2), profile["group"]
    )
    steps, warmup = spec["steps"], spec["warmup"]
    variants = [
        (
            "lead_core.train.run (selected layers + last, prefetching)",
            lambda: train_step.time_trainer(paths, teacher_dir, student_dir, profile, steps, warmup, tmp),
        ),
        (
            "plain PyTorch step, all layers scored",
            lambda: train_step.time_loop(paths, teacher_dir, student_dir, profile, steps, warmup, True),
        ),
        (
            "plain PyTorch step, selected layers scored",
            lambda: train_step.time_loop(paths, teacher_dir, student_dir, profile, steps, warmup, False),
        ),
    ]
    name = (
        f"LEAD step {profile['teacher']['layers']}L CB -> {profile['student']['layers']}L DE, "
        f"{profile['queries']} q x {profile['group']} p"
    )
    rows = []
    for path, fn in variants:
        times: list[float] = []
        _, peak = measured(lambda fn=fn, times=times: times.extend(fn()), device)
        median = statistics.median(times)
        rows.append(
            row(
                name,
                path,
                profile["queries"] / median,
                "queries/s",
                spec["target"],
                spec["naive"],
                peak,
                median_step_s=round(median, 4),
                steps=len(times),
                k=profile["k"],
                precision=profile["precision"],
            )
        )
    return rows


def check_search(spec: dict, device: torch.device) -> list[dict]:
    """Exact top-k with lead_core.search.exact over random vectors, several block sizes."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    nq, nd, dim, k = spec["queries"], spec["docs"], spec["dim"], spec["k"]
    corpus = search_speed.random_corpus(nd, dim, device, dtype)
    gen = torch.Generator(device=device).manual_seed(1)
    queries = (torch.randn(nq, dim, generator=gen, device=device) / dim**0.5).to(dtype)

    def search_all(query_block: int, corpus_block: int):
        parts = [
            exact_topk(corpus, queries[s : s + query_block], k, corpus_block)
            for s in range(0, nq, query_block)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    # Reference for the first queries: fp32 products over the same (fp16-stored) vectors.
    few = queries[: spec["check_queries"]].float()
    ref = torch.cat([few @ corpus[s : s + 1_000_000].float().T for s in range(0, nd, 1_000_000)], dim=1)
    ref_rows = ref.topk(k, dim=1).indices.cpu().numpy()
    del ref
    name = f"exact search top-{k}, {nq:,} queries x {nd:,} x {dim} ({str(dtype).removeprefix('torch.')})"
    rows = []
    for query_block, corpus_block in spec["blocks"]:
        path = f"lead_core.search.exact (query block {query_block}, corpus block {corpus_block:,})"
        try:
            search_all(query_block, corpus_block)  # warm-up
            times, peaks = [], []
            for _ in range(spec["repeats"]):
                result: list = []
                seconds, peak = measured(
                    lambda qb=query_block, cb=corpus_block, out=result: out.append(search_all(qb, cb)), device
                )
                times.append(seconds)
                peaks.append(peak or 0.0)
        except torch.OutOfMemoryError as err:
            rows.append(
                skipped(name, path, "s", spec["target"], spec["naive"], f"out of memory ({err})"[:200])
            )
            torch.cuda.empty_cache()
            continue
        rows_found = result[0][1][: spec["check_queries"]].cpu().numpy()
        agreement = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(rows_found, ref_rows)]))
        rows.append(
            row(
                name,
                path,
                min(times),
                "s",
                spec["target"],
                spec["naive"],
                max(peaks) if device.type == "cuda" else None,
                seconds_all=[round(t, 3) for t in times],
                corpus_gib=round(corpus.numel() * corpus.element_size() / 2**30, 2),
                top_k_agreement_with_fp32=round(agreement, 4),
            )
        )
    return rows


# --------------------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    lines = [
        f"GPU check on {result['device']} ({'DRY RUN: tiny models on CPU, not results' if result['dry_run'] else 'full sizes'}"
        f"{'' if result['complete'] else ', INCOMPLETE'}); "
        f"torch {result['torch']}, transformers {result['transformers']}; {result['wall_seconds']:.0f} s in all.",
        "",
        "| check | path | value | target | naive (measured earlier) | peak GPU GiB | meets target |",
        "|---|---|---:|---:|---|---:|:---:|",
    ]
    for r in result["rows"]:
        value = r.get("note", "") if r["value"] is None else f"{r['value']:,.3f} {r['unit']}"
        meets = {True: "yes", False: "**no**", None: "–"}[r["meets_target"]]
        peak = "–" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
        lines.append(
            f"| {r['check']} | {r['path']} | {value} | {r['target_op']} {r['target']:,} {r['unit']} | "
            f"{r['naive_measured']} | {peak} | {meets} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models and sizes on CPU (a smoke run)")
    parser.add_argument(
        "--sections", default="encode,train,search", help="comma-separated, run in this order"
    )
    parser.add_argument("--data", help="datasets folder (see the module doc)")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results", help="folder for the JSON and Markdown"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # time the work, not tracking
    if args.dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(min(2, torch.get_num_threads()))
    elif torch.cuda.is_available():
        device = torch.device("cuda", 0)
    else:
        raise SystemExit("no CUDA device: the check needs a GPU (or --dry-run for a tiny run on CPU)")
    sizes = DRY if args.dry_run else FULL
    sections = [s for s in args.sections.split(",") if s]
    data = find_data(args.data) if "encode" in sections else None
    rows: list[dict] = []
    failures: list[str] = []

    def write(final: bool) -> dict:
        """The JSON and Markdown so far: rewritten after every section, so a run stopped at its
        time limit still leaves the sections it finished."""
        import transformers

        if args.dry_run:  # tiny models on CPU: the targets do not apply
            for r in rows:
                r["meets_target"] = None
        result = {
            "dry_run": args.dry_run,
            "complete": final,
            "device": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else (platform.processor() or "cpu"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "data": str(data) if data else None,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "rows": rows,
            "failures": failures,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "gpu_check_dryrun" if args.dry_run else "gpu_check"
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(markdown(result))
        return result

    with tempfile.TemporaryDirectory(prefix="lead-gpu-check-") as tmp:
        for section in sections:
            print(f"[{time.perf_counter() - started:6.1f} s] {section}", flush=True)
            try:
                if section == "encode":
                    for spec in sizes["encode"]:
                        rows += check_encode(spec, data, device, Path(tmp), args.dry_run)
                elif section == "train":
                    rows += check_train(sizes["train"], device, Path(tmp))
                elif section == "search":
                    rows += check_search(sizes["search"], device)
                else:
                    raise SystemExit(f"unknown section {section!r} (encode, train, search)")
            except Exception:  # noqa: BLE001 - one failing section must not lose the others' numbers
                failures.append(f"{section}: {traceback.format_exc()}")
                print(failures[-1], file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            write(final=False)
    result = write(final=True)
    print(markdown(result))
    print(f"wrote {args.out}/{'gpu_check_dryrun' if args.dry_run else 'gpu_check'}.json and .md")
    if failures:
        raise SystemExit(f"{len(failures)} section(s) failed: {', '.join(f.split(':')[0] for f in failures)}")
    return result


if __name__ == "__main__":
    main()
