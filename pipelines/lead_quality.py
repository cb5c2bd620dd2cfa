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
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "pipelines"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from kfp import compiler, dsl  # noqa: E402

import components as c  # noqa: E402
from components.placement import TaskPlacer  # noqa: E402
from components.report import report  # noqa: E402
from lead_core.profiles import DEFAULT_MODEL_DIR, PROFILES, profile  # noqa: E402
from lead_core.report.methods import methods_for  # noqa: E402

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

        # Sources outside the artifacts enter the cache keys by their run-time identity (never cached).
        dataset_identity = place.identity("identity-dataset", dataset_uri, "dataset")

        def ingest(split: str, name: str):
            return place(
                name,
                c.ingest(
                    source=dataset_uri,
                    layout=dataset_layout,
                    split=split,
                    drop_unknown_qrels=drop_unknown_qrels,
                    dataset_identity=dataset_identity,
                ),
            ).outputs["data"]

        def backbone(role: str, source):
            source_identity = place.identity(f"identity-{role}", source, "backbone")
            return place(
                f"backbone-{role}", c.backbone(source=source, source_identity=source_identity)
            ).outputs["model"]

        train_data, eval_data = ingest(train_split, "ingest-train"), ingest(eval_split, "ingest-eval")
        teacher_init, student_init = backbone("teacher", teacher_model), backbone("student", student_model)

        def retrieve(name: str, model):
            """(index, run): the model's top search_k for the evaluation queries."""
            embeddings = place(f"{name}-encode", c.encode(model=model, data=eval_data)).outputs["embeddings"]
            built = place(f"{name}-index", c.index(embeddings=embeddings)).outputs["index"]
            run = place(f"{name}-search", c.search(index=built, model=model, data=eval_data, k=search_k))
            return built, run.outputs["run"]

        def evaluate(name: str, run):
            place(
                f"evaluate-{name}",
                c.evaluate(
                    run=run, data=eval_data, name=name, measures=metrics, relevance_level=relevance_level
                ),
            )

        # The student warm-up on BM25 negatives, then hard negatives mined with the warm student.
        batch = {"batch_size": batch_size, "num_negatives": train_negatives, "seed": seed}
        bm25_train = place(
            "bm25-train",
            c.bm25(data=train_data, k=search_k, negatives="bm25", num_negatives=negative_pool, seed=seed),
        )
        student_warm = place(
            "student-warmup",
            c.train(
                groups=bm25_train.outputs["groups"],
                data=train_data,
                init=student_init,
                options=train_options,
                params={"architecture": "de", "max_steps": warmup_steps, "lr": student_lr, **batch},
            ),
        ).outputs["model"]
        warm_index, warm_run = retrieve("student-warm", student_warm)
        evaluate("warmup-only", warm_run)
        mine_run = place(
            "student-warm-search-train",
            c.search(index=warm_index, model=student_warm, data=train_data, k=mine_depth),
        ).outputs["run"]
        hard = place(
            "mine",
            c.mine(
                run=mine_run,
                data=train_data,
                depth=mine_depth,
                skip=0,
                num_negatives=negative_pool,
                seed=seed,
            ),
        ).outputs["groups"]

        teacher_warm = place(
            "teacher-warmup",
            c.train(
                groups=hard,
                data=train_data,
                init=teacher_init,
                options=train_options,
                params={"architecture": teacher_type, "max_steps": warmup_steps, "lr": teacher_lr, **batch},
            ),
        ).outputs["model"]
        bm25_eval = place(
            "bm25-eval", c.bm25(data=eval_data, k=search_k, negatives="bm25", num_negatives=1, seed=seed)
        ).outputs["run"]
        teacher_run = place(
            "teacher-rerank", c.rerank(model=teacher_warm, run=bm25_eval, data=eval_data, k=rerank_k)
        ).outputs["reranked"]
        evaluate("teacher-before", teacher_run)

        with dsl.ParallelFor(items=params_items) as params:
            distilled = place(
                "distill",
                c.distill(
                    groups=hard,
                    data=train_data,
                    student=student_warm,
                    teacher=teacher_warm,
                    options=train_options,
                    params=params,
                ),
            )
            _, run = retrieve("distilled", distilled.outputs["model"])

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compile", metavar="FILE", help="write the pipeline spec (YAML) for `kfp run create`")
    mode.add_argument("--submit", action="store_true", help="submit a run to a KFP endpoint (kfp.Client)")
    parser.add_argument(
        "--profile", choices=PROFILES, default="cpu", help="parameter defaults (lead_core.profiles)"
    )
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="distillation method ids")
    parser.add_argument("--seeds", default="13", help="comma-separated distillation seeds")
    parser.add_argument(
        "--model-dir", default=DEFAULT_MODEL_DIR, help="where the gpu profile finds all-mpnet-base-v2"
    )
    parser.add_argument("--endpoint", help="submit: KFP API endpoint URL")
    parser.add_argument("--experiment", default="lead", help="submit: KFP experiment name")
    parser.add_argument("--mlflow-uri", default="", help="MLFLOW_TRACKING_URI of every task")
    args = parser.parse_args(argv)

    items = loop_items(
        args.profile, [m for m in args.methods.split(",") if m], [int(s) for s in args.seeds.split(",")]
    )
    pipeline = build_pipeline(items, mlflow_tracking_uri=args.mlflow_uri)
    values = profile(args.profile, model_dir=args.model_dir)
    arguments = {k: v for k, v in values.items() if k in pipeline.component_spec.inputs}
    if args.compile:
        compiler.Compiler().compile(pipeline, args.compile, pipeline_parameters=arguments)
        print(f"wrote {args.compile} (profile {args.profile}, {len(items)} distillation runs)")
        return 0
    if not args.endpoint:
        parser.error("--submit needs --endpoint URL")
    from kfp import Client

    run = Client(host=args.endpoint).create_run_from_pipeline_func(
        pipeline,
        arguments=arguments,
        experiment_name=args.experiment,
        run_name=f"lead-quality-{args.profile}",
    )
    print(f"submitted run {run.run_id} to {args.endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
