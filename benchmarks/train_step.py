"""Benchmark: queries/s of one LEAD training step (teacher + student, forward, backward, optimizer).

Profiles (random-init weights of the real shapes; timing does not depend on the values):
  gpu: 12-layer all-mpnet-base-v2-shaped ColBERT teacher (768-d, MPNet tokenizer) -> 6-layer
       all-MiniLM-L6-v2-shaped dual-encoder student (384-d, BERT tokenizer), 32 queries x 8
       passages, query 32 / passage 160 tokens, K=5, bf16 autocast.
  cpu: the same idea scaled to a shared 2-core machine: a 6-layer MiniLM-shaped ColBERT teacher
       -> 3-layer student, 4 queries x 8 passages, query 32 / passage 64 tokens, K=3, fp32.

Variants, all with joint training (both models get gradients and an AdamW step):
  trainer          `lead_core.train.run` itself: only the K selected layers (+ the last) are
                   scored; batches sampled and tokenized ahead in a background thread.
  selected-layers  a plain loop (tokenize inline, forward, lead_loss, backward, step) scoring the
                   same selected layers – isolates the trainer's own overhead.
  all-layers       the straightforward step: the same loop scoring every layer of both models.

Every passage is long enough to fill passage_max_length, so shapes are the profile's.

    python benchmarks/train_step.py [--profile cpu|gpu] [--steps 5] [--warmup 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark the checkout's lead_core

from lead_core.artifacts import atomic_path  # noqa: E402
from lead_core.data.schema import CORPUS, GROUPS, QUERIES, write_table  # noqa: E402
from lead_core.losses import lead_loss, select_layers  # noqa: E402
from lead_core.losses.objectives import positive_mask  # noqa: E402
from lead_core.models import ModelConfig, build_model, build_tiny_backbone, load_model  # noqa: E402
from lead_core.train import Config, run  # noqa: E402

PROFILES = {
    "gpu": dict(
        teacher=dict(family="mpnet", layers=12, hidden=768, heads=12, intermediate=3072),
        student=dict(family="bert", layers=6, hidden=384, heads=12, intermediate=1536),
        queries=32,
        group=8,
        query_len=32,
        passage_len=160,
        k=5,
        precision="bf16",
    ),
    "cpu": dict(
        teacher=dict(family="bert", layers=6, hidden=384, heads=12, intermediate=1536),
        student=dict(family="bert", layers=3, hidden=384, heads=12, intermediate=1536),
        queries=4,
        group=8,
        query_len=32,
        passage_len=64,
        k=3,
        precision="fp32",
    ),
}


def shaped_backbone(
    folder: Path, family: str, layers: int, hidden: int, heads: int, intermediate: int
) -> Path:
    """A random-init backbone folder of the given shape, with the family's real-size tokenizer."""
    build_tiny_backbone(folder, family=family, num_layers=1, hidden=16)  # the tokenizer
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        pad_token_id=tokenizer.pad_token_id,
    )
    if family == "bert":
        config, cls = transformers.BertConfig(max_position_embeddings=512, **common), transformers.BertModel
    else:
        config = transformers.MPNetConfig(
            max_position_embeddings=514, bos_token_id=0, eos_token_id=2, **common
        )
        cls = transformers.MPNetModel
    torch.manual_seed(0)
    cls(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_data(folder: Path, num_queries: int, group: int, seed: int = 0) -> dict[str, str]:
    """Synthetic groups with distinct passages of ~4x passage_len words (always truncated)."""
    rng = random.Random(seed)
    words = "the of cell protein gene patients study disease risk treatment effect human cancer blood".split()
    num_docs = num_queries * group
    corpus = pa.table(
        {
            "doc_id": [f"d{i}" for i in range(num_docs)],
            "title": [""] * num_docs,
            "text": [" ".join(rng.choices(words, k=800)) for _ in range(num_docs)],
        }
    )
    queries = pa.table(
        {
            "query_id": [f"q{i}" for i in range(num_queries)],
            "text": [" ".join(rng.choices(words, k=60)) for _ in range(num_queries)],
        }
    )
    groups = pa.table(
        {
            "query_id": [f"q{i}" for i in range(num_queries)],
            "positive_ids": [[f"d{i * group}"] for i in range(num_queries)],
            "negative_ids": [[f"d{i * group + j}" for j in range(1, group)] for i in range(num_queries)],
            "negative_source": ["synthetic"] * num_queries,
        }
    )
    paths = {name: str(folder / f"{name}.parquet") for name in ("groups", "corpus", "queries")}
    write_table(corpus, paths["corpus"], CORPUS)
    write_table(queries, paths["queries"], QUERIES)
    write_table(groups, paths["groups"], GROUPS)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_trainer(paths, teacher_dir, student_dir, profile, steps, warmup, out_dir) -> list[float]:
    """Per-step wall times of `lead_core.train.run` (the time between successive step callbacks)."""
    stamps: list[float] = []
    config = Config(
        **paths,
        out=str(out_dir / "student"),
        model=str(student_dir),
        architecture="de",
        teacher=str(teacher_dir),
        method="lead",
        k=profile["k"],
        batch_size=profile["queries"],
        num_negatives=profile["group"] - 1,
        max_steps=warmup + steps + 1,
        lr=2e-5,
        precision=profile["precision"],
        progress=False,
        num_workers=2,
        query_max_length=profile["query_len"],
        passage_max_length=profile["passage_len"],
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def stamp(_info) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    run(config, callbacks=[stamp])
    return list(np.diff(stamps)[warmup:])


def time_loop(paths, teacher_dir, student_dir, profile, steps, warmup, all_layers: bool) -> list[float]:
    """Per-step wall times of a plain training loop over the same batches (tokenization inline)."""
    from lead_core.train.data import BatchPlan, TrainingData

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_model(teacher_dir).to(device).train()
    student = (
        build_model(
            ModelConfig(
                "de",
                str(student_dir),
                query_max_length=profile["query_len"],
                passage_max_length=profile["passage_len"],
            )
        )
        .to(device)
        .train()
    )
    teacher.config.query_max_length, teacher.config.passage_max_length = (
        profile["query_len"],
        profile["passage_len"],
    )
    params = list(teacher.parameters()) + list(student.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-5, eps=1e-8)
    plan = BatchPlan(
        TrainingData(paths["groups"], paths["corpus"], paths["queries"], profile["group"] - 1),
        profile["queries"],
        seed=888,
    )
    rng = np.random.default_rng(888)
    n, m, k = teacher.num_layers, student.num_layers, profile["k"]
    bf16 = profile["precision"] == "bf16"
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        batch = plan.batch(i)
        t_inputs = teacher.prepare(batch.queries, batch.passages)
        s_inputs = student.prepare(batch.queries, batch.passages)
        a, b = select_layers("random", n, m, k, rng)
        t_layers = list(range(n)) if all_layers else sorted({*a, n - 1})
        s_layers = list(range(m)) if all_layers else sorted({*b, m - 1})
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            t_scores = teacher(t_inputs, layers=t_layers).layer_scores
            s_scores = student(s_inputs, layers=s_layers).layer_scores
        t_full = t_scores.new_zeros((n, *t_scores.shape[1:]))
        t_full[t_layers] = t_scores
        s_full = s_scores.new_zeros((m, *s_scores.shape[1:]))
        s_full[s_layers] = s_scores
        positives = positive_mask(len(batch.queries), batch.group_size, s_full.shape[-1], 0, device)
        loss = lead_loss(t_full.float(), s_full.float(), positives, a, b).total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="gpu" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the dev machine is shared)")
    parser.add_argument(
        "--variants", default="trainer,selected-layers,all-layers", help="comma-separated, run in this order"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # time training, not tracking
    profile = PROFILES[args.profile]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({args.threads} thread(s))"

    with tempfile.TemporaryDirectory(prefix="lead-train-bench-") as tmp:
        root = Path(tmp)
        teacher_backbone = shaped_backbone(root / "teacher-backbone", **profile["teacher"])
        student_dir = shaped_backbone(root / "student-backbone", **profile["student"])
        teacher_dir = root / "teacher"
        build_model(
            ModelConfig(
                "cb",
                str(teacher_backbone),
                query_max_length=profile["query_len"],
                passage_max_length=profile["passage_len"],
            )
        ).save(teacher_dir)
        num_queries = profile["queries"] * (args.warmup + args.steps + 2)
        paths = write_data(root / "data", num_queries, profile["group"])
        variants = {
            "trainer": lambda: time_trainer(
                paths, teacher_dir, student_dir, profile, args.steps, args.warmup, root
            ),
            "selected-layers": lambda: time_loop(
                paths, teacher_dir, student_dir, profile, args.steps, args.warmup, False
            ),
            "all-layers": lambda: time_loop(
                paths, teacher_dir, student_dir, profile, args.steps, args.warmup, True
            ),
        }
        rows = []
        for name in args.variants.split(","):
            times = variants[name]()
            median = statistics.median(times)
            rows.append(
                {
                    "variant": name,
                    "median_s": round(median, 4),
                    "min_s": round(min(times), 4),
                    "queries_per_s": round(profile["queries"] / median, 2),
                    # the least disturbed step: on a shared machine the better estimate of speed
                    "queries_per_s_best": round(profile["queries"] / min(times), 2),
                    "steps": len(times),
                }
            )

    shapes = (
        f"profile={args.profile} device={device} Q={profile['queries']} G={profile['group']} "
        f"Lq={profile['query_len']} Lp={profile['passage_len']} K={profile['k']} precision={profile['precision']} "
        f"teacher={profile['teacher']['layers']}x{profile['teacher']['hidden']} ColBERT "
        f"student={profile['student']['layers']}x{profile['student']['hidden']} DE"
    )
    header = f"{'variant':<16} {'median s/step':>14} {'min s/step':>11} {'queries/s':>10} {'best q/s':>9} {'steps':>6}"
    print(shapes)
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['variant']:<16} {r['median_s']:>14.4f} {r['min_s']:>11.4f} {r['queries_per_s']:>10.2f} "
            f"{r['queries_per_s_best']:>9.2f} {r['steps']:>6}"
        )
    result = {
        "profile": args.profile,
        "device": device,
        "settings": profile,
        "cpu_threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "rows": rows,
    }
    # Keep other profiles' results (a GPU run and a CPU run share the file).
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "profile" in previous:  # a single earlier result
        previous = {previous["profile"]: previous}
    previous[args.profile] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as out:
        Path(out).write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
