"""Quality benchmark: the paper's comparisons (Tables 3–6, 10) on real data, with p-values vs RD.

Runs the quality pipeline (pipelines/lead_quality.py: its protocol, profiles and backbone sources)
through kfp.local and writes its report where the benchmark's results live:

    python benchmarks/quality.py [--profile cpu] [--methods zero-shot,warmup,rd,lead,lead-frozen]
        [--seeds 13,14,15] [--steps N] [--warmup-steps N] [--teacher-warmup-steps N] [--lr X]
        [--dataset scifact|dl-pools|URI [--layout beir|msmarco --train-split S --eval-split S]]
        [--set KEY=VALUE ...] [--out DIR] [--tag NAME]
    python benchmarks/quality.py --list          # the method ids

The zero-shot, warm-up and teacher-before rows are always in the table (fixed tasks of the
pipeline); the other method ids are the pipeline's loop of distillations. kfp.local's cache (under
--out) serves every task whose inputs are unchanged, so a rerun with more methods or seeds trains
only what is missing and a stopped run continues. Writes
benchmarks/results/quality_<profile>[_<dataset>][_<tag>].json and .md, and <out>/report/ (the
table as Markdown and HTML, loss-curve and layer-weight plots).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

from lead_core.artifacts import atomic_path
from lead_core.report.methods import CORE, methods_for
from pipelines import cli
from pipelines.lead_quality import (
    FIXED_ROWS,
    STUDENT_LAYERS,
    comparison_profile,
    loop_items,
    run_local,
)

REPO = Path(__file__).resolve().parents[1]  # the checkout (pip install -e .): results and datasets beside it
RESULTS = REPO / "benchmarks" / "results"
DATASETS_DIR = REPO.parent / "shared" / "datasets"
# Shorthands for the datasets on these machines (folders under --datasets-dir) and how to read them.
DATASETS = {
    "scifact": {"folder": "scifact", "dataset_layout": "beir", "train_split": "train", "eval_split": "test"},
    # MS MARCO layout check: DL19's queries train (grade >= 2 relevant), DL20 evaluates over the pool.
    "dl-pools": {
        "folder": "msmarco-dl19-dl20-pools",
        "dataset_layout": "msmarco",
        "train_split": "dl19",
        "eval_split": "dl20",
        "relevance_level": 2,
        "drop_unknown_qrels": True,
    },
}


def dataset_overrides(args: argparse.Namespace) -> tuple[dict, str]:
    """Pipeline parameters naming the dataset, and its name in the result files' names."""
    if args.dataset in DATASETS:
        shorthand = dict(DATASETS[args.dataset])
        values = {"dataset_uri": str(Path(args.datasets_dir) / shorthand.pop("folder")), **shorthand}
        name = args.dataset
    else:
        values = {"dataset_uri": cli.dataset_argument(args.dataset)}
        name = Path(args.dataset).name.removesuffix(".zip").removesuffix(".tar.gz") or "dataset"
    for flag in ("layout", "train_split", "eval_split", "relevance_level"):
        if getattr(args, flag) is not None:
            values["dataset_layout" if flag == "layout" else flag] = getattr(args, flag)
    if args.drop_unknown_qrels:
        values["drop_unknown_qrels"] = True
    return values, name


def parse_sets(items: list[str]) -> dict:
    """--set KEY=VALUE pairs, each value read as YAML (numbers, booleans, lists, mappings)."""
    import yaml

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(STUDENT_LAYERS), default="cpu")
    parser.add_argument(
        "--dataset", default="scifact", help=f"a shorthand ({', '.join(DATASETS)}) or a dataset folder/URI"
    )
    parser.add_argument(
        "--layout", choices=("beir", "msmarco"), help="dataset layout (default: the profile's)"
    )
    parser.add_argument("--train-split", help="query split to train on")
    parser.add_argument("--eval-split", help="query split to evaluate on")
    parser.add_argument("--relevance-level", type=int, help="lowest relevant grade (binary measures)")
    parser.add_argument(
        "--drop-unknown-qrels", action="store_true", help="pooled corpora: drop qrels outside it"
    )
    parser.add_argument("--datasets-dir", default=str(DATASETS_DIR), help="where the shorthands' folders are")
    parser.add_argument("--methods", default=",".join(CORE), help="comma-separated method ids, or 'all'")
    parser.add_argument("--seeds", default="13", help="comma-separated distillation seeds, e.g. 13,14,15")
    parser.add_argument("--steps", type=int, help="distillation steps (default: the profile's)")
    parser.add_argument("--warmup-steps", type=int, help="student (phase 1) and teacher warm-up steps")
    parser.add_argument("--teacher-warmup-steps", type=int, help="teacher warm-up steps")
    parser.add_argument("--lr", type=float, help="learning rate of every training run")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any pipeline parameter"
    )
    parser.add_argument("--mpnet-dir", help="gpu profile: the all-mpnet-base-v2 folder (the teacher)")
    parser.add_argument(
        "--out", default=str(REPO / "local_outputs" / "quality"), help="pipeline root, cache, report"
    )
    parser.add_argument(
        "--tag", default="", help="suffix of the result files: quality_<profile>[_<dataset>][_<tag>]"
    )
    parser.add_argument("--verbose", action="store_true", help="print every task's output")
    parser.add_argument("--list", action="store_true", help="print the method ids and exit")
    args = parser.parse_args(argv)

    overrides, dataset_name = dataset_overrides(args)
    if args.steps is not None:
        overrides["distill_steps"] = args.steps
    if args.warmup_steps is not None:
        overrides["phase1_steps"] = overrides["warmup_steps"] = args.warmup_steps
    if args.teacher_warmup_steps is not None:
        overrides["warmup_steps"] = args.teacher_warmup_steps
    if args.lr is not None:
        overrides.update(phase1_lr=args.lr, teacher_lr=args.lr, distill_lr=args.lr)
    if args.mpnet_dir:
        overrides["teacher_model"] = str(Path(args.mpnet_dir).resolve())
    overrides.update(parse_sets(args.set))
    try:
        values = comparison_profile(args.profile, **overrides)
    except KeyError as err:
        parser.error(str(err))

    methods = methods_for(STUDENT_LAYERS[args.profile], values["k"])
    if args.list:
        for mid, m in methods.items():
            print(f"{mid:18s} {m.name}")
        return 0
    wanted = (
        list(methods) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    unknown = [m for m in wanted if m not in methods]
    if unknown:
        parser.error(f"unknown method id(s) {unknown}; known: {list(methods)}")
    fixed = set(FIXED_ROWS.values())
    outside = [m for m in wanted if m not in fixed and (methods[m].kind != "distill" or methods[m].linear)]
    if outside and args.methods != "all":
        parser.error(
            f"{outside}: not rows of the quality pipeline (+ linear needs its own warm-up; the teacher "
            "after joint training is not reranked); the zero-shot, warm-up and teacher-before rows are always in"
        )
    loop = [m for m in wanted if m not in fixed and m not in outside]
    seeds = [int(s) for s in args.seeds.split(",")]
    items = loop_items(args.profile, loop, seeds, values)

    suffix = args.profile if dataset_name == "scifact" else f"{args.profile}_{dataset_name}"
    suffix += f"_{args.tag}" if args.tag else ""
    out = Path(args.out)
    outputs, run = run_local(values, items, out, args.verbose)

    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(outputs["table"], report_dir / f"quality_{suffix}.md")
    shutil.copyfile(outputs["html"], report_dir / f"quality_{suffix}.html")
    shutil.rmtree(report_dir / f"plots_{suffix}", ignore_errors=True)
    shutil.copytree(outputs["plots"], report_dir / f"plots_{suffix}")
    report = json.loads(outputs["results"].read_text())
    ids = {m.name: mid for mid, m in methods.items()}
    doc = {
        "profile": args.profile,
        "parameters": values,
        "dataset": dataset_name,
        "seeds": seeds,
        "distill_steps": values["distill_steps"],
        "measures": values["metrics"],
        "baseline": report["baseline"],
        "rows": {ids[name]: {"name": name, **row} for name, row in report["rows"].items()},
        "table": report["table"],
        "wall_seconds_this_run": run["wall_s"],
        "task_logs": run["task_logs"],
        "pipeline_outputs": {name: str(path) for name, path in outputs.items()},
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "command": " ".join(sys.argv),
    }
    md_path, json_path = RESULTS / f"quality_{suffix}.md", RESULTS / f"quality_{suffix}.json"
    with atomic_path(md_path) as tmp:
        tmp.write_text(report["markdown"])
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str))
    print(report["markdown"])
    print(f"wrote {json_path} and {md_path}; report and plots in {report_dir} ({run['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
