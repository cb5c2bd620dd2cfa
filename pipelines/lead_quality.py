"""The quality comparison (benchmarks/quality.py) as a Kubeflow pipeline: one fan-out over methods.

    ingest(train, eval) ─ backbones ─ BM25(train) ─ student warm-up ─ encode ─ index ─ search(eval) ─ evaluate
                                              search(train) ─ mine ─ teacher warm-up
    ParallelFor over (method, seed): distill ─ encode ─ index ─ search(eval) ─ evaluate
       └─ Collected runs ─ report (paper-layout table with p-values vs RD: Markdown + HTML)
    BM25(eval) ─ the warm teacher reranks it ─ evaluate "teacher before LEAD"

The methods come from lead_core.report.methods (the same rows as the benchmark); the loop items
are fixed when the pipeline is built (`--methods`, `--seeds`, the profile's distillation
settings). Distillation rows share the warm-ups, as in the benchmark; every method gets the same
seeds. Unlike the benchmark, the student warm-up trains on BM25 negatives and the hard negatives
are mined with the warm student (a lead model is only made by training), so there is no
zero-shot row here; teacher-after-LEAD and + linear rows are the benchmark's only.

Usage:
    python pipelines/lead_quality.py --compile quality.yaml [--profile cpu] [--methods rd,lead,...]
        [--seeds 13,14,15]
    python pipelines/lead_quality.py --submit --endpoint URL [--profile gpu --model-dir /models]
    kfp dsl compile --py pipelines/lead_quality.py --output quality.yaml   # `quality_pipeline`: cpu, defaults
"""

import argparse
import sys

from kfp import dsl

from components.placement import TaskPlacer
from components.report import report
from lead_core.profiles import profile
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
# Student depth per profile (K runs 1..depth); the pipeline profiles' student models.
STUDENT_LAYERS = {"cpu": 3, "gpu": 6, "msmarco": 6, "smoke": 2}


def loop_items(profile_name: str, method_ids: list[str], seeds: list[int]) -> list[dict]:
    """ParallelFor items: {"row": the table row's name, "params": lead_core.train.Config fields} per
    distillation method and seed (only `distill` rows without appended layers fan out). The
    distillation's steps, learning rate and batch come from the profile: a loop item cannot be
    merged with pipeline parameters inside the graph."""
    values = profile(profile_name)
    methods = methods_for(STUDENT_LAYERS[profile_name], values["k"])
    unknown = [m for m in method_ids if m not in methods]
    if unknown:
        raise ValueError(f"unknown method id(s) {unknown}; known: {list(methods)}")
    items = []
    for mid in method_ids:
        method = methods[mid]
        if method.kind != "distill" or method.linear:
            raise ValueError(
                f"{mid}: only distillation rows from the shared warm student fan out "
                "(zero-shot, warm-up and teacher rows are fixed tasks; + linear needs its own warm-up)"
            )
        params = {
            "tau_d": values["tau_d"],
            "tau_l": values["tau_l"],
            "max_steps": values["distill_steps"],
            "lr": values["distill_lr"],
            "batch_size": values["batch_size"],
            "num_negatives": values["train_negatives"],
            **method.train,
        }
        for seed in seeds:
            items.append({"row": method.name, "params": {**params, "seed": seed}})
    return items


def build_pipeline(items: list[dict], mlflow_tracking_uri: str = ""):
    """The pipeline over fixed loop `items` (see loop_items)."""
    names = [item["row"] for item in items]
    params_items = [item["params"] for item in items]
    defaults = profile("cpu")

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
        search_k: int = defaults["search_k"],
        mine_depth: int = defaults["mine_depth"],
        negative_pool: int = defaults["negative_pool"],
        warmup_steps: int = defaults["warmup_steps"],
        teacher_lr: float = defaults["teacher_lr"],
        student_lr: float = defaults["student_lr"],
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
    ):
        """Args:
        dataset_uri: dataset folder or URI (BEIR or MS MARCO layout).
        dataset_layout: beir or msmarco.
        train_split: query split to train on.
        eval_split: query split to evaluate on.
        drop_unknown_qrels: drop qrels outside the corpus (pooled corpora).
        teacher_model: backbone source of the teacher (see lead_core.backbone).
        student_model: backbone source of the dual-encoder student.
        teacher_type: teacher architecture: cb or ce.
        search_k: retrieval depth of the evaluation runs.
        mine_depth: mine hard negatives from the zero-shot student's top mine_depth.
        negative_pool: mined negatives kept per query.
        warmup_steps: optimizer steps of each warm-up.
        teacher_lr: learning rate of the teacher warm-up.
        student_lr: learning rate of the student warm-up.
        batch_size: queries per micro-batch in every training run.
        train_negatives: negatives per query in every training batch.
        seed: seed of the warm-ups and the mining (each distillation uses its loop item's seed).
        train_options: further lead_core.train.Config fields for every training run.
        rerank_k: the teacher reranks BM25's top rerank_k.
        metrics: ir_measures names to evaluate.
        relevance_level: lowest qrels grade counted relevant by binary measures.
        baseline: the row the report's p-values compare against.
        accelerator_type: accelerator resource of the GPU stages.
        gpu_count: accelerators per GPU stage.
        """

        place = TaskPlacer(accelerator_type, gpu_count, mlflow_tracking_uri)
        wire = Wiring(place, locals())
        train_data, eval_data = wire.train_data, wire.eval_data
        teacher_init, student_init = (
            wire.backbone("teacher", teacher_model),
            wire.backbone("student", student_model),
        )

        def evaluate(name: str, run):
            wire.evaluate(f"evaluate-{name}", run, name, metrics, relevance_level)

        # The student warm-up on BM25 negatives, then hard negatives mined with the warm student.
        bm25_train = wire.bm25("bm25-train", train_data, search_k, "bm25", negative_pool)
        student_warm = wire.train(
            "student-warmup", bm25_train.outputs["groups"], student_init, "de", warmup_steps, student_lr
        )
        warm_index, warm_run = wire.retrieve("student-warm", student_warm, search_k)
        evaluate("warmup-only", warm_run)
        mine_run = wire.search("student-warm-search-train", warm_index, student_warm, train_data, mine_depth)
        hard = wire.mine(mine_run, mine_depth, 0, negative_pool)

        teacher_warm = wire.train(
            "teacher-warmup", hard, teacher_init, teacher_type, warmup_steps, teacher_lr
        )
        bm25_eval = wire.bm25("bm25-eval", eval_data, search_k, "bm25", 1).outputs["run"]
        evaluate("teacher-before", wire.rerank("teacher-rerank", teacher_warm, bm25_eval, rerank_k))

        with dsl.ParallelFor(items=params_items) as params:
            distilled = wire.distill(hard, student_warm, teacher_warm, params)
            _, run = wire.retrieve("distilled", distilled.outputs["model"], search_k)

        place(
            "report",
            report(
                runs=dsl.Collected(run),
                data=eval_data,
                names=names,
                baseline=baseline,
                measures=metrics,
                relevance_level=relevance_level,
                title="LEAD quality: distillation methods",
            ),
        )

    return quality_pipeline


# The pipeline for `kfp dsl compile --py pipelines/lead_quality.py`: the default methods, seed 13,
# the cpu profile's settings (tracking from the `lead-tracking` ConfigMap).
quality_pipeline = build_pipeline(loop_items("cpu", list(DEFAULT_METHODS), [13]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_compile_submit(parser.add_mutually_exclusive_group(required=True))
    cli.add_profile(parser)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="distillation method ids")
    parser.add_argument("--seeds", default="13", help="comma-separated distillation seeds")
    cli.add_cluster(parser)
    args = parser.parse_args(argv)

    items = loop_items(
        args.profile, [m for m in args.methods.split(",") if m], [int(s) for s in args.seeds.split(",")]
    )
    pipeline = build_pipeline(items, mlflow_tracking_uri=args.mlflow_uri)
    values = profile(args.profile, model_dir=args.model_dir)
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
