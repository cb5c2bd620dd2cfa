"""The quality comparison (the paper's Tables 3–6 and 10) as a Kubeflow pipeline: one fan-out over methods × seeds.

The paper's three phases, with the student as its own phase-1 dual encoder:

    ingest(corpus; train, eval) ─ backbones ─ the untrained student ─ encode ─ index ─ search(eval)   row "zero-shot"
    phase 1: BM25(train) negatives ─ student warm-up ─ encode ─ index ─ search(eval)          row "warm-up"
                                                                  └─ search(train) ─ mine
    phase 2: teacher warm-up on the mined negatives ─ reranks BM25(eval)'s top rerank_k       row "teacher before"
    phase 3: ParallelFor over (method, seed): distill(warm student, warm teacher, mined negatives)
                                               ─ encode ─ index ─ search(eval)               rows no-teacher, RD, LEAD, ...
    report: every run evaluated; the paper-layout table with paired t-tests vs RD (Markdown, HTML,
            JSON) and the distillations' loss and layer-weight plots

Every distillation starts from the same warm student and teacher and trains on the same hard
negatives, mined with the warm student (the model phase 1 makes); every method gets the same seeds.
The paper warms the student up on the hard negatives too (phase 2); here the `no-teacher` row is
exactly that run continued for the distillation's steps, so "more training" and "a teacher" stay
apart. The loop items (methods, seeds and the distillation settings) are fixed when the pipeline is
built. Rows the loop cannot hold: + linear (its own warm-up) and the teacher after joint training
(a rerank of only some iterations' teachers; kfp.local runs no condition inside a loop).

Settings: a lead_core profile with COMPARISON's overrides (the comparison needs more steps and
longer passages than the main pipeline's quick cpu profile). `benchmarks/quality.py` runs this
pipeline through kfp.local and writes the result files.

Usage:
    python pipelines/lead_quality.py --local [--profile cpu] [--dataset URI] [--methods rd,lead,...]
        [--seeds 13,14,15] [--workdir DIR] [--set KEY=VALUE ...]
    python pipelines/lead_quality.py --compile quality.yaml [--profile cpu] [--methods ...] [--seeds ...]
    python pipelines/lead_quality.py --submit --endpoint URL [--profile gpu --model-dir /models]
    kfp dsl compile --py pipelines/lead_quality.py --output quality.yaml   # `quality_pipeline`: cpu, defaults
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown

import components as c
from components.placement import TaskPlacer
from components.report import report
from lead_core.profiles import DEFAULT_MODEL_DIR, profile
from lead_core.report.methods import methods_for
from pipelines import cli
from pipelines.wiring import Wiring

PIPELINE_NAME = "lead-quality"
# Distillation rows the loop runs by default: the paper's Tables 3-6 at LEAD's default K.
DEFAULT_METHODS = (
    "no-teacher",
    "rd",
    "fd",
    "lead",
    "lead-frozen",
    "lead-noreweight",
    "sel-weighted",
    "sel-last",
    "sel-skip",
)
# Student depth per profile (K runs 1..depth); the profiles' student models.
STUDENT_LAYERS = {"cpu": 3, "gpu": 6, "msmarco": 6, "smoke": 2}
# Rows outside the loop: always in the table.
FIXED_ROWS = {"zero_shot": "zero-shot", "warmup": "warmup", "teacher": "teacher-before"}
# The comparison's settings where they differ from a lead_core profile. cpu: that profile is sized
# to run the main pipeline in ~11 min; 20/20/40 steps at lr 2e-5 barely move a model, and 64-token
# passages cut most of a SciFact abstract (~250 tokens). These are the settings the benchmark's
# earlier results used: the student's phase-1 warm-up 100 steps, the teacher's 60, 50 distillation
# steps, lr 5e-5 everywhere, 32/128 tokens, 30 mined negatives from the top 50, teacher reranks 20.
COMPARISON: dict[str, dict[str, Any]] = {
    "cpu": {
        "phase1_steps": 100,
        "warmup_steps": 60,
        "distill_steps": 50,
        "phase1_lr": 5e-5,
        "teacher_lr": 5e-5,
        "distill_lr": 5e-5,
        "negative_pool": 30,
        "mine_depth": 50,
        "rerank_k": 20,
        "train_options": {"query_max_length": 32, "passage_max_length": 128, "pooling": "mean"},
    },
}


def comparison_profile(name: str, model_dir: str = DEFAULT_MODEL_DIR, **overrides: Any) -> dict[str, Any]:
    """lead_core.profiles' `name` with COMPARISON's overrides, then `overrides`."""
    return profile(name, model_dir=model_dir, **{**COMPARISON.get(name, {}), **overrides})


def loop_items(
    profile_name: str, method_ids: list[str], seeds: list[int], values: dict | None = None
) -> list[dict]:
    """ParallelFor items, seed by seed (a stopped local run has whole seeds): {"row": the table
    row's name, "params": lead_core.train.Config fields} per distillation method and seed (only
    `distill` rows without appended layers fan out). The distillation's steps, learning rate and
    batch come from `values` (default: the comparison profile's): a loop item cannot be merged
    with pipeline parameters inside the graph."""
    values = values or comparison_profile(profile_name)
    methods = methods_for(STUDENT_LAYERS[profile_name], values["k"])
    unknown = [m for m in method_ids if m not in methods]
    if unknown:
        raise ValueError(f"unknown method id(s) {unknown}; known: {list(methods)}")
    for mid in method_ids:
        method = methods[mid]
        if method.kind != "distill" or method.linear:
            raise ValueError(
                f"{mid}: only distillation rows from the shared warm student fan out "
                "(zero-shot, warm-up and teacher rows are fixed tasks; + linear needs its own warm-up)"
            )
    base = {
        "tau_d": values["tau_d"],
        "tau_l": values["tau_l"],
        "max_steps": values["distill_steps"],
        "lr": values["distill_lr"],
        "batch_size": values["batch_size"],
        "num_negatives": values["train_negatives"],
    }
    return [
        {"row": methods[mid].name, "params": {**base, **methods[mid].train, "seed": seed}}
        for seed in seeds
        for mid in method_ids
    ]


class Outputs(NamedTuple):
    """The pipeline's outputs: the report's."""

    table: Markdown
    html: HTML
    results: Artifact  # JSON: each row's measures per seed, and the table with p-values
    plots: Artifact  # folder of PNGs


def build_pipeline(
    items: list[dict],
    mlflow_tracking_uri: str = "",
    fingerprint: str = "",
    stages: dict | None = None,
    local: bool = False,
    parallelism: int = 0,
):
    """The pipeline over fixed loop `items` (see loop_items). `fingerprint`: LEAD_CODE_FINGERPRINT
    of every task (part of the local cache key); `stages`: filled with stage name -> task name.
    `local`: for kfp.local, which cannot resolve a pipeline parameter in the resources of a task
    inside a ParallelFor ("Parent pipeline input argument ... not found"): the accelerator
    settings are the defaults' constants (the subprocess runner ignores them anyway).
    `parallelism`: distillations at once (0: no limit)."""
    names = [item["row"] for item in items]
    seeds = [item["params"]["seed"] for item in items]
    params_items = [item["params"] for item in items]
    methods = methods_for(1, 1)
    fixed_names = {key: methods[mid].name for key, mid in FIXED_ROWS.items()}
    defaults = comparison_profile("cpu")

    @dsl.pipeline(name=PIPELINE_NAME, description=__doc__.splitlines()[0])
    def quality_pipeline(
        dataset_uri: str = defaults["dataset_uri"],
        dataset_layout: str = defaults["dataset_layout"],
        train_split: str = defaults["train_split"],
        eval_split: str = defaults["eval_split"],
        drop_unknown_qrels: bool = defaults["drop_unknown_qrels"],
        teacher_model: str = defaults["teacher_model"],
        student_model: str = defaults["student_model"],
        teacher_type: str = defaults["teacher_type"],
        negatives: str = defaults["negatives"],
        bm25_k: int = defaults["bm25_k"],
        negative_pool: int = defaults["negative_pool"],
        phase1_steps: int = defaults["phase1_steps"],
        phase1_lr: float = defaults["phase1_lr"],
        search_k: int = defaults["search_k"],
        mine_depth: int = defaults["mine_depth"],
        mine_skip: int = defaults["mine_skip"],
        warmup_steps: int = defaults["warmup_steps"],
        teacher_lr: float = defaults["teacher_lr"],
        batch_size: int = defaults["batch_size"],
        train_negatives: int = defaults["train_negatives"],
        seed: int = defaults["seed"],
        train_options: dict = defaults["train_options"],
        rerank_k: int = defaults["rerank_k"],
        metrics: list = defaults["metrics"],
        relevance_level: int = defaults["relevance_level"],
        baseline: str = "RD",
        accelerator_type: str = defaults["accelerator_type"],
        gpu_count: int = defaults["gpu_count"],
    ) -> Outputs:
        """Args:
        dataset_uri: dataset folder or URI (BEIR or MS MARCO layout).
        dataset_layout: beir or msmarco.
        train_split: query split to train on.
        eval_split: query split to evaluate on.
        drop_unknown_qrels: drop qrels outside the corpus (pooled corpora).
        teacher_model: backbone source of the teacher (see lead_core.backbone).
        student_model: backbone source of the dual-encoder student.
        teacher_type: teacher architecture: cb or ce.
        negatives: phase-1 negatives of the student warm-up: bm25 or random.
        bm25_k: BM25 run depth for the phase-1 groups.
        negative_pool: negatives kept per query by BM25/random and by mining.
        phase1_steps: optimizer steps of the student warm-up (phase 1).
        phase1_lr: learning rate of the student warm-up.
        search_k: retrieval depth of the evaluation runs.
        mine_depth: mine hard negatives from the warm student's top mine_depth.
        mine_skip: leave the first mine_skip ranks out of mining.
        warmup_steps: optimizer steps of the teacher warm-up (phase 2).
        teacher_lr: learning rate of the teacher warm-up.
        batch_size: queries per micro-batch in every warm-up.
        train_negatives: negatives per query in every warm-up batch.
        seed: seed of the warm-ups, BM25 negatives and mining (each distillation: its loop item's).
        train_options: further lead_core.train.Config fields for every training run.
        rerank_k: the teacher reranks BM25's top rerank_k (BM25's next ranks follow).
        metrics: ir_measures names to evaluate.
        relevance_level: lowest qrels grade counted relevant by binary measures.
        baseline: the row the report's p-values compare against.
        accelerator_type: accelerator resource of the GPU stages.
        gpu_count: accelerators per GPU stage.
        """
        accelerator = (
            (defaults["accelerator_type"], defaults["gpu_count"]) if local else (accelerator_type, gpu_count)
        )
        place = TaskPlacer(*accelerator, mlflow_tracking_uri, fingerprint, stages=stages)
        w = Wiring(place, locals())
        teacher_init, student_init = (
            w.backbone("teacher", teacher_model),
            w.backbone("student", student_model),
        )

        # The zero-shot row: the student as built from its backbone.
        untrained = place(
            "student-untrained", c.untrained(init=student_init, architecture="de", options=train_options)
        ).outputs["model"]
        _, zero_shot_run = w.retrieve("student-untrained", untrained, search_k)

        # Phase 1: the student warm-up on BM25 negatives; its top mine_depth give the hard negatives.
        bm25_train = w.bm25("bm25-train", w.train_data, bm25_k, negatives, negative_pool)
        student_warm = w.train(
            "student-warmup", bm25_train.outputs["groups"], student_init, "de", phase1_steps, phase1_lr
        )
        warm_index, warm_run = w.retrieve("student-warm", student_warm, search_k)
        train_run = w.search("student-warm-search-train", warm_index, student_warm, w.train_data, mine_depth)
        hard = w.mine(train_run, mine_depth, mine_skip, negative_pool)

        # Phase 2: the teacher warm-up on the hard negatives; it reranks BM25's evaluation run.
        teacher_warm = w.train("teacher-warmup", hard, teacher_init, teacher_type, warmup_steps, teacher_lr)
        bm25_eval = w.bm25("bm25-eval", w.eval_data, search_k, "bm25", 1).outputs["run"]
        teacher_run = w.rerank("teacher-rerank", teacher_warm, bm25_eval, rerank_k)

        # Phase 3: one distillation per (method, seed), all from the same warm models and negatives.
        with dsl.ParallelFor(items=params_items, parallelism=parallelism) as params:
            distilled = w.distill(hard, student_warm, teacher_warm, params)
            _, run = w.retrieve("distilled", distilled.outputs["model"], search_k)

        made = place(
            "report",
            report(
                runs=dsl.Collected(run),
                logs=dsl.Collected(distilled.outputs["log"]),
                data=w.eval_data,
                names=names,
                seeds=seeds,
                fixed_names=fixed_names,
                baseline=baseline,
                measures=metrics,
                relevance_level=relevance_level,
                title="LEAD quality",
                zero_shot=zero_shot_run,
                warmup=warm_run,
                teacher=teacher_run,
            ),
        ).outputs
        return Outputs(made["table"], made["html"], made["results"], made["plots"])

    return quality_pipeline


def run_local(
    values: dict[str, Any], items: list[dict], workdir: Path, verbose: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the pipeline through kfp.local (caching on: a rerun continues where a stopped one
    ended, and another method or seed set reuses the warm-ups); (the report's outputs as paths,
    {"wall_s", "task_logs"})."""
    from images.reference import code_hash
    from pipelines.local_console import task_console

    workdir = Path(workdir).resolve()
    pipeline_root = workdir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    stages: dict[str, str] = {}
    # One distillation at a time: one machine gains nothing from two (kfp.local would run two
    # side by side), and a stopped run then keeps every finished row.
    pipeline = build_pipeline(items, fingerprint=code_hash(), stages=stages, local=True, parallelism=1)
    cli.init_local(pipeline_root, workdir / "cache")
    start = time.time()
    names = {task_name: stage for stage, task_name in stages.items()}
    with cli.tasks_tmpdir(workdir / "tmp"), task_console(workdir / "logs", names, verbose) as console:
        task = pipeline(**{k: v for k, v in values.items() if k in pipeline.component_spec.inputs})
    outputs = {name: Path(task.outputs[name].path) for name in Outputs._fields}
    return outputs, {
        "wall_s": round(time.time() - start, 1),
        "task_logs": str(console.logs) if console.logs else None,
    }


# The pipeline for `kfp dsl compile --py pipelines/lead_quality.py`: the default methods, seed 13,
# the cpu profile's settings (tracking from the `lead-tracking` ConfigMap).
quality_pipeline = build_pipeline(loop_items("cpu", list(DEFAULT_METHODS), [13]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run locally through kfp.local (caching on)")
    cli.add_compile_submit(mode)
    cli.add_profile(parser, source="lead_core.profiles + COMPARISON")
    parser.add_argument("--dataset", help="dataset folder or URI (overrides the profile's)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="distillation method ids")
    parser.add_argument("--seeds", default="13", help="comma-separated distillation seeds")
    parser.add_argument("--workdir", default="local_outputs/quality", help="local: pipeline root and cache")
    parser.add_argument("--verbose", action="store_true", help="local: print every task's output")
    cli.add_cluster(parser)
    args = parser.parse_args(argv)

    overrides = {"dataset_uri": cli.dataset_argument(args.dataset)} if args.dataset else {}
    values = comparison_profile(args.profile, model_dir=args.model_dir, **overrides)
    items = loop_items(
        args.profile,
        [m for m in args.methods.split(",") if m],
        [int(s) for s in args.seeds.split(",")],
        values,
    )
    if args.local:
        outputs, _ = run_local(values, items, Path(args.workdir), args.verbose)
        print(json.loads(outputs["results"].read_text())["markdown"])
        return 0
    pipeline = build_pipeline(items, mlflow_tracking_uri=args.mlflow_uri)
    arguments = {k: v for k, v in values.items() if k in pipeline.component_spec.inputs}
    return cli.compile_or_submit(
        parser,
        args,
        pipeline,
        arguments,
        run_name=f"lead-quality-{args.profile}",
        what=f"profile {args.profile}, {len(items)} distillation runs",
    )


if __name__ == "__main__":
    sys.exit(main())
