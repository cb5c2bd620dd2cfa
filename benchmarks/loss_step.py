"""Micro-benchmark: one LEAD loss (Eq. 6–12) + backward at the paper's shapes.

Shapes: Q=32 queries, P=256 passages, N=12 teacher layers, M=6 student layers, K=5 (Table 4).
Measures the loss alone (scores are leaf tensors: no encoder), median wall time over repeats and
the peak memory allocated during one forward+backward – on CPU (torch profiler memory events) and
on CUDA when available (torch.cuda.max_memory_allocated). RD and the contrastive loss are timed
beside it for scale. Prints a table and writes benchmarks/results/loss_step.json.

    python benchmarks/loss_step.py [--repeats 50] [--threads 1] [--out benchmarks/results/loss_step.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

# Benchmark the checkout's lead_core, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lead_core.artifacts import atomic_path
from lead_core.losses import contrastive_loss, lead_loss, response_distillation_loss, select_layers

Q, P, N, M, K = 32, 256, 12, 6, 5
GROUP = P // Q  # each query's own group: 1 positive + 7 hard negatives, cross-batch negatives


def make_inputs(device: torch.device, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(888)
    teacher = torch.randn(N, Q, P, generator=generator).to(device, dtype).requires_grad_(True)
    student = torch.randn(M, Q, P, generator=generator).to(device, dtype).requires_grad_(True)
    positives = torch.zeros(Q, P, dtype=torch.bool)
    positives[torch.arange(Q), torch.arange(Q) * GROUP] = True
    return teacher, student, positives.to(device)


def cases(teacher, student, positives, layers) -> dict[str, Callable[[], torch.Tensor]]:
    a, b = layers
    return {
        "lead (joint, reweight)": lambda: lead_loss(teacher, student, positives, a, b).total,
        "lead (w/o joint)": lambda: lead_loss(teacher, student, positives, a, b, joint=False).total,
        "lead (w/o reweight)": lambda: lead_loss(teacher, student, positives, a, b, reweight=False).total,
        "rd": lambda: response_distillation_loss(teacher[-1], student[-1], positives).total,
        "contrastive": lambda: contrastive_loss(student[-1], positives).total,
    }


def step(loss_fn, teacher, student, device) -> None:
    teacher.grad = None
    student.grad = None
    loss_fn().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings_ms(
    loss_fn, teacher, student, device, repeats: int, warmup: int = 5
) -> tuple[float, float, float]:
    """(median, inter-quartile range, minimum) wall time of one step; the minimum is the least
    disturbed by other processes on a shared machine."""
    for _ in range(warmup):
        step(loss_fn, teacher, student, device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(loss_fn, teacher, student, device)
        times.append((time.perf_counter() - start) * 1e3)
    quartiles = statistics.quantiles(times, n=4)
    return statistics.median(times), quartiles[2] - quartiles[0], min(times)


def peak_bytes(loss_fn, teacher, student, device) -> int:
    """Peak memory allocated by one forward+backward (input gradients included) above what was live
    before it."""
    step(loss_fn, teacher, student, device)  # grads allocated once, as in training
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step(loss_fn, teacher, student, device)
        return torch.cuda.max_memory_allocated(device) - before
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        step(loss_fn, teacher, student, device)
    # Each event's own (self) allocations minus frees, applied when it ends – after its children,
    # so a parent that frees a child's temporary never dips below zero first; "[memory]" events
    # are frees outside any op. The running sum's maximum is the step's peak (to within one op).
    events = sorted(prof.events(), key=lambda e: e.time_range.end)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the dev machine is shared)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loss_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    layers = select_layers("random", N, M, K, np.random.default_rng(888))
    rows = []
    for device in devices:
        for dtype in (torch.float32, torch.bfloat16):
            teacher, student, positives = make_inputs(device, dtype)
            for name, loss_fn in cases(teacher, student, positives, layers).items():
                if dtype != torch.float32 and not name.startswith("lead (joint"):
                    continue
                median, iqr, fastest = timings_ms(loss_fn, teacher, student, device, args.repeats)
                rows.append(
                    {
                        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                        "dtype": str(dtype).removeprefix("torch."),
                        "loss": name,
                        "median_ms": round(median, 4),
                        "iqr_ms": round(iqr, 4),
                        "min_ms": round(fastest, 4),
                        # The CPU profiler now and then misses an allocation: keep the largest of 5.
                        "peak_mib": round(
                            max(peak_bytes(loss_fn, teacher, student, device) for _ in range(5)) / 2**20, 3
                        ),
                    }
                )

    header = f"{'device':<24} {'dtype':<9} {'loss + backward':<24} {'median ms':>10} {'IQR ms':>8} {'min ms':>8} {'peak MiB':>9}"
    print(f"Q={Q} P={P} N={N} M={M} K={K} layers={layers} repeats={args.repeats} threads={args.threads}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['device'][:24]:<24} {r['dtype']:<9} {r['loss']:<24} {r['median_ms']:>10.3f} "
            f"{r['iqr_ms']:>8.3f} {r['min_ms']:>8.3f} {r['peak_mib']:>9.3f}"
        )
    result = {
        "shapes": {"Q": Q, "P": P, "N": N, "M": M, "K": K},
        "layers": {"teacher": layers[0], "student": layers[1]},
        "repeats": args.repeats,
        "cpu_threads": args.threads,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
