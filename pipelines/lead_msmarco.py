"""The LEAD pipeline (paper §4.2.2) as a Kubeflow Pipelines v2 DAG, and a CLI to run, compile or submit it.

    ingest(train) ─ bm25 (BM25/random negatives) ─ train phase-1 DE ─ encode ─ index ─ search(train) ─ mine
    ingest(eval)                                                          └─ search(eval) ─┐           │
          ┌──────────────────── teacher warm-up ◀──────────────────────────────────────────┼───────────┤
          │                     student warm-up ◀──────────────────────────────────────────┼───────────┘
          └─▶ distill (LEAD/RD/FD) ─ encode ─ index ─ search(eval) ─ evaluate "student"   │
    teachers (warm, and after joint LEAD) rerank the phase-1 DE's eval top-k ◀─────────────┘ ─ evaluate
    baselines: BM25, the phase-1 DE and the warm student (no distillation) are evaluated too.
    The corpus both splits share is ingested once (ingest-corpus); the split ingests write only
    queries and qrels, and every stage that reads passages takes that one corpus artifact.

Usage (after `pip install -e .`, which makes components/, pipelines/ and images/ importable):
    python pipelines/lead_msmarco.py --local [--profile cpu] [--dataset URI] [--workdir DIR]
                                     [--set tau_l=5 ...] [--force distill ...]
    python pipelines/lead_msmarco.py --compile lead.yaml [--profile msmarco] [--mlflow-uri URI]
    python pipelines/lead_msmarco.py --submit --endpoint URL [--profile gpu --model-dir /models]
    kfp dsl compile --py pipelines/lead_msmarco.py --output lead.yaml   # `lead_pipeline`: msmarco defaults

Locally every task runs in a subprocess of this Python (kfp.local's SubprocessRunner, nothing is
pip-installed) with caching on: a task whose component, image, command and inputs (input artifact
URIs included) are unchanged is served from the cache, so changing one stage's parameter re-runs
that stage and what depends on it. `--force STAGE` disables the cache for one stage (its
descendants then re-run too, because its outputs get new URIs). Failed tasks are never cached.
The console shows one line per task (stage, cached or ran, seconds) and the result table; each task's
full output is in WORKDIR/logs/<time>/<stage>.log (a failed task's path and last lines are printed);
`--verbose` prints everything kfp.local prints instead.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Metrics, Model

import components as c
from components._image import BASE_IMAGE_CPU, BASE_IMAGE_CUDA
from components.placement import GPU_COMPONENTS, TaskPlacer
from images.reference import code_hash
from lead_core.config import ConfigError
from lead_core.profiles import MSMARCO, profile
from pipelines import cli
from pipelines.local_console import TaskFailed, task_console
from pipelines.local_docker import DockerSetup
from pipelines.wiring import Wiring

PIPELINE_NAME = "lead-msmarco"
PHASE1_BM25 = "bm25-train"  # the stage name (prefix) of the phase-1 negatives
D = MSMARCO  # parameter defaults: the msmarco profile


class Results(NamedTuple):
    """The pipeline's outputs: one Metrics artifact per evaluated system (rows of the final table)."""

    bm25: Metrics
    phase1: Metrics
    teacher: Metrics
    teacher_distilled: Metrics
    student_warm: Metrics
    student: Metrics
    student_model: Model  # the distilled student as a sentence-transformers folder (lead export)


SYSTEMS = {
    "bm25": "BM25",
    "phase1": "phase-1 DE",
    "teacher": "teacher (warm, rerank)",
    "teacher_distilled": "teacher after distillation (rerank)",
    "student_warm": "student (warm-up only)",
    "student": "student (distilled)",
}


def code_fingerprint() -> str:
    """The images' code hash (images/reference.py: lead_core, components, Dockerfiles, pins), so
    local cache entries die with code changes as cluster ones do with the image reference.

    LEAD_CODE_FINGERPRINT in the environment is used instead when set (e.g. to keep a cache across
    edits that do not change results, or in tests that share a working tree with other editors).
    """
    return code_hash()


def build_pipeline(
    force: frozenset[str] | set[str] = frozenset(),
    mlflow_tracking_uri: str = "",
    fingerprint: str = "",
    images: dict[str, str] | None = None,
) -> tuple[Any, dict[str, str]]:
    """The pipeline, and its stage names -> compiled task names.

    `force`: stage names (keys of the returned dict) whose cache is disabled. `mlflow_tracking_uri`:
    set as MLFLOW_TRACKING_URI on every task (a pipeline parameter cannot feed an environment
    variable in KFP v2); when empty, tasks read it from the optional ConfigMap `lead-tracking` (deploy/).
    `fingerprint`: set as LEAD_CODE_FINGERPRINT on every task (part of the local cache key).
    `images`: image reference -> the image its tasks run in instead (local Docker runs without a GPU).
    """
    stages: dict[str, str] = {}

    @dsl.pipeline(name=PIPELINE_NAME, description=__doc__.splitlines()[0])
    def lead_pipeline(
        dataset_uri: str = D["dataset_uri"],
        dataset_layout: str = D["dataset_layout"],
        train_split: str = D["train_split"],
        eval_split: str = D["eval_split"],
        drop_unknown_qrels: bool = D["drop_unknown_qrels"],
        phase1_model: str = D["phase1_model"],
        teacher_model: str = D["teacher_model"],
        student_model: str = D["student_model"],
        teacher_type: str = D["teacher_type"],
        negatives: str = D["negatives"],
        triples_uri: str = D["triples_uri"],
        bm25_k: int = D["bm25_k"],
        bm25_shards: int = D["bm25_shards"],
        negative_pool: int = D["negative_pool"],
        phase1_steps: int = D["phase1_steps"],
        phase1_lr: float = D["phase1_lr"],
        search_k: int = D["search_k"],
        mine_depth: int = D["mine_depth"],
        mine_skip: int = D["mine_skip"],
        warmup_steps: int = D["warmup_steps"],
        teacher_lr: float = D["teacher_lr"],
        student_lr: float = D["student_lr"],
        method: str = D["method"],
        k: int = D["k"],
        tau_d: float = D["tau_d"],
        tau_l: float = D["tau_l"],
        reweight: bool = D["reweight"],
        joint: bool = D["joint"],
        selection: str = D["selection"],
        distill_steps: int = D["distill_steps"],
        distill_lr: float = D["distill_lr"],
        batch_size: int = D["batch_size"],
        train_negatives: int = D["train_negatives"],
        seed: int = D["seed"],
        train_options: dict = D["train_options"],
        rerank_k: int = D["rerank_k"],
        metrics: list = D["metrics"],
        relevance_level: int = D["relevance_level"],
        accelerator_type: str = D["accelerator_type"],
        gpu_count: int = D["gpu_count"],
    ) -> Results:
        """Args:
        dataset_uri: dataset folder or URI (MS MARCO or BEIR layout; local, http(s), s3, gs, archives).
        dataset_layout: msmarco or beir.
        train_split: query split to train on.
        eval_split: query split to evaluate on.
        drop_unknown_qrels: drop qrels outside the corpus (pooled corpora) instead of failing.
        phase1_model: backbone source of the phase-1 dual encoder (see lead_core.backbone).
        teacher_model: backbone source of the teacher.
        student_model: backbone source of the dual-encoder student.
        teacher_type: teacher architecture: cb (ColBERT), ce (cross-encoder) or de (dual encoder).
        negatives: phase-1 negatives: bm25, random, or triples (the official MS MARCO training triples).
        triples_uri: negatives=triples: the qidpidtriples file (path or URI; qid, pos_pid, neg_pid per line).
        bm25_k: BM25 run depth for the phase-1 groups.
        bm25_shards: query shards the phase-1 BM25 retrieval fans out over (one index, built once).
        negative_pool: negatives kept per query by BM25/random and by mining (the pool sampled from).
        phase1_steps: optimizer steps of the phase-1 DE.
        phase1_lr: learning rate of the phase-1 DE.
        search_k: retrieval depth of the evaluation runs.
        mine_depth: mine hard negatives from the phase-1 DE's top mine_depth.
        mine_skip: leave the first mine_skip ranks out of mining.
        warmup_steps: optimizer steps of each warm-up.
        teacher_lr: learning rate of the teacher warm-up.
        student_lr: learning rate of the student warm-up.
        method: distillation method: lead, rd or fd.
        k: LEAD: layer pairs distilled per step (K).
        tau_d: distillation temperature.
        tau_l: LEAD: layer re-weighting temperature (Eq. 7).
        reweight: LEAD: re-weight the selected layers.
        joint: LEAD: train teacher and student jointly.
        selection: LEAD layer selection: random, weighted, last or skip.
        distill_steps: optimizer steps of the distillation.
        distill_lr: learning rate of the distillation.
        batch_size: queries per micro-batch in every training run.
        train_negatives: negatives per query in every training batch.
        seed: seed of every stage.
        train_options: further lead_core.train.Config fields for every training run.
        rerank_k: teachers rerank the phase-1 DE's top rerank_k.
        metrics: ir_measures names to evaluate.
        relevance_level: lowest qrels grade counted relevant by binary measures.
        accelerator_type: accelerator resource of the GPU stages, e.g. nvidia.com/gpu.
        gpu_count: accelerators per GPU stage.
        """

        place = TaskPlacer(
            accelerator_type, gpu_count, mlflow_tracking_uri, fingerprint, force, stages, images
        )
        wire = Wiring(place, locals())
        train_data, eval_data = wire.train_data, wire.eval_data
        inits = {
            role: wire.backbone(role, source)
            for role, source in (
                ("phase1", phase1_model),
                ("teacher", teacher_model),
                ("student", student_model),
            )
        }

        # Phase 1: a dual encoder on BM25 (or random) negatives.
        phase1_groups = wire.bm25_groups(
            PHASE1_BM25, train_data, bm25_k, negatives, negative_pool, bm25_shards, triples_uri
        )
        phase1 = wire.train("phase1", phase1_groups, inits["phase1"], "de", phase1_steps, phase1_lr)
        phase1_index = wire.index("phase1", phase1)
        train_run = wire.search("phase1-search-train", phase1_index, phase1, train_data, mine_depth)
        phase1_eval_run = wire.search("phase1-search-eval", phase1_index, phase1, eval_data, search_k)
        hard = wire.mine(train_run, mine_depth, mine_skip, negative_pool)

        # Phase 2: teacher and student warm-ups on the mined negatives (independent: they run in parallel).
        teacher_warm = wire.train(
            "teacher-warmup", hard, inits["teacher"], teacher_type, warmup_steps, teacher_lr
        )
        student_warm = wire.train("student-warmup", hard, inits["student"], "de", warmup_steps, student_lr)

        # Phase 3: distillation.
        distilled = wire.distill(
            hard,
            student_warm,
            teacher_warm,
            {
                "method": method,
                "k": k,
                "tau_d": tau_d,
                "tau_l": tau_l,
                "reweight": reweight,
                "joint": joint,
                "selection": selection,
                "max_steps": distill_steps,
                "lr": distill_lr,
                **wire.batch,
            },
        )

        # Teachers rerank the phase-1 DE's evaluation run; students retrieve from their own index.
        runs = {
            "bm25": wire.bm25("bm25-eval", eval_data, search_k, "bm25", 1).outputs["run"],
            "phase1": phase1_eval_run,
            "teacher": wire.rerank("teacher-rerank", teacher_warm, phase1_eval_run, rerank_k),
            "teacher_distilled": wire.rerank(
                "teacher-distilled-rerank", distilled.outputs["teacher_out"], phase1_eval_run, rerank_k
            ),
            "student_warm": wire.retrieve("student-warm", student_warm, search_k)[1],
            "student": wire.retrieve("student", distilled.outputs["model"], search_k)[1],
        }
        baselines = {"student": runs["student_warm"], "teacher_distilled": runs["teacher"]}
        results = {
            system: wire.evaluate(
                f"evaluate-{system.replace('_', '-')}",
                run,
                SYSTEMS[system],
                metrics,
                relevance_level,
                baseline=baselines.get(system),
            )
            for system, run in runs.items()
        }
        # The final student for use elsewhere: SentenceTransformer(folder), and with tracking on an
        # MLflow model registered as "<pipeline>-student" (alias candidate: the newest version).
        results["student_model"] = place(
            "export-student",
            c.export(
                model=distilled.outputs["model"],
                teacher=distilled.outputs["teacher_out"],
                metrics=results["student"],
                teacher_source=teacher_model,
                dataset=wire.dataset_identity,
                registered_model_name=f"{PIPELINE_NAME}-student",
            ),
        ).outputs["exported"]
        return Results(**results)

    return lead_pipeline, stages


# The pipeline with its built-in defaults (the msmarco profile; tracking from the `lead-tracking`
# ConfigMap): what `kfp dsl compile --py pipelines/lead_msmarco.py` compiles. STAGES: its stage
# names -> compiled task names (the names --force takes; the same for every build).
lead_pipeline, STAGES = build_pipeline()


# ---------------------------------------------------------------------------------------------- CLI


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs -> pipeline parameters, each value read as its default's type."""
    from lead_core.config import ConfigError, parse_assignments

    try:
        return parse_assignments(items, {key: type(default) for key, default in MSMARCO.items()})
    except ConfigError as err:
        raise SystemExit(str(err)) from None


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_sets(args.set or [])
    if args.dataset:
        overrides["dataset_uri"] = cli.dataset_argument(args.dataset)
    try:
        return profile(args.profile, model_dir=args.model_dir, **overrides)
    except ConfigError as err:  # parameters that contradict each other (negatives=triples, no file)
        raise SystemExit(f"lead-msmarco: {err}") from None


def new_run_dir(pipeline_root: Path, before: set[str]) -> Path | None:
    """The folder kfp.local made under `pipeline_root` for this run (`<pipeline name>-<timestamp>`,
    not among `before`), or None when it made none. Older runs' folders are never this run's."""
    new = sorted(
        p for p in pipeline_root.iterdir() if p.name not in before and p.name.startswith(f"{PIPELINE_NAME}-")
    )
    return new[-1] if new else None


def metric_rows(outputs: dict[str, Any], measures: list[str]) -> dict[str, dict[str, float]]:
    """System -> measure -> value, measures in the order of the `metrics` parameter (the Metrics
    artifacts' metadata comes back from kfp.local in no fixed order)."""
    rows = {}
    for name, system in SYSTEMS.items():
        metadata = dict(outputs[name].metadata)
        order = [m for m in measures if m in metadata] + sorted(m for m in metadata if m not in measures)
        rows[system] = {m: metadata[m] for m in order}
    return rows


def run_local(args: argparse.Namespace) -> dict[str, Any]:
    """Run the pipeline through kfp.local; print and return the metric table."""
    from lead_core.evaluate import format_table
    from lead_core.tracking import TRACKING_URI_ENV, describe_run, local_default_uri, pipeline_run, runs_page

    values = parameters(args)
    workdir = Path(args.workdir).resolve()
    # One cache per runner: a task's key (image, command, inputs) does not say where it ran.
    pipeline_root = workdir / "pipeline_root"
    cache_root = workdir / ("cache" if args.runner == "subprocess" else f"cache-{args.runner}")
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # The subprocesses inherit this environment (containers: see local_docker); none of it enters a cache key.
    os.environ.setdefault(TRACKING_URI_ENV, local_default_uri(workdir))
    docker = DockerSetup(values, pipeline_root, GPU_COMPONENTS) if args.runner == "docker" else None
    pipeline, stages = build_pipeline(
        force=frozenset(args.force or ()),
        fingerprint=code_fingerprint(),
        images=docker.images if docker else None,
    )
    cli.init_local(pipeline_root, cache_root, docker.runner if docker else None)
    before = {p.name for p in pipeline_root.iterdir()}
    start = time.time()
    defaults = profile(args.profile, model_dir=args.model_dir)
    overrides = {k: v for k, v in values.items() if v != defaults[k]}  # the run's name says what differs
    with pipeline_run(
        "lead_msmarco", {"profile": args.profile, **values}, run_name=describe_run(args.profile, overrides)
    ) as parent:
        if docker:
            docker.refresh()  # the parent run's id and its store, for the containers
        names = {task_name: stage for stage, task_name in stages.items()}
        with (
            cli.tasks_tmpdir(workdir / "tmp"),
            task_console(workdir / "logs", names, args.verbose) as console,
        ):
            task = pipeline(**values)
        wall = time.time() - start
        rows = metric_rows(task.outputs, values["metrics"])
        run_dir = new_run_dir(pipeline_root, before)
        # by stage; a stage in neither list was skipped (a dsl.If branch not taken)
        executed = sorted(s for s, t in stages.items() if console.outcomes.get(t) == "ran")
        cached = sorted(s for s, t in stages.items() if console.outcomes.get(t) == "cached")
        summary = {
            "profile": args.profile,
            "parameters": values,
            "metrics": rows,
            "run_dir": str(run_dir) if run_dir else None,
            "executed": executed,
            "cached": cached,
            "skipped": sorted(set(stages) - set(executed) - set(cached)),
            "wall_s": round(wall, 1),
            "tracking_uri": os.environ[TRACKING_URI_ENV],
            "parent_run_id": parent.run_id,
            "student_model": task.outputs["student_model"].path,
            "experiment_id": parent.experiment_id,
            "runner": args.runner,
            # the images the CPU and the GPU stages ran in (the latter: the CPU image without a GPU)
            "images": {"cpu": BASE_IMAGE_CPU, "gpu": docker.images.get(BASE_IMAGE_CUDA, BASE_IMAGE_CUDA)}
            if docker
            else None,
            "task_logs": str(console.logs) if console.logs else None,
        }
        table = format_table(rows, title="system")
        # Named by system key ("student/nDCG@10"): the compare view's columns.
        keys = {system: key for key, system in SYSTEMS.items()}
        parent.log_metrics({f"{keys[system]}/{m}": v for system, ms in rows.items() for m, v in ms.items()})
        parent.log_metrics({"wall_s": wall, "stages_executed": len(executed)})
        results = (
            workdir / "results" / f"{run_dir.name if run_dir else time.strftime('%Y-%m-%d-%H-%M-%S')}.md"
        )
        results.parent.mkdir(exist_ok=True)
        results.write_text(f"# LEAD pipeline, profile {args.profile}\n\n```\n{table}\n```\n")
        parent.log_artifact(results)
    print(
        f"\nLEAD pipeline, profile {args.profile}, {values['dataset_uri']} ({values['eval_split']}): {wall:.0f} s"
    )
    print(
        f"executed {len(executed)} stages; {len(summary['cached'])} from cache: {summary['cached'] or 'none'}"
    )
    print(table)
    print(f"distilled student (SentenceTransformer folder): {summary['student_model']}")
    if summary["experiment_id"] is not None:
        uri = summary["tracking_uri"]
        ui = uri if uri.startswith("http") else "http://127.0.0.1:5000"
        how = "" if uri.startswith("http") else f"`mlflow ui --backend-store-uri {uri}`, then "
        print(f"compare runs: {how}{runs_page(summary['experiment_id'], ui)}")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run locally through kfp.local (caching on)")
    cli.add_compile_submit(mode)
    mode.add_argument("--list-stages", action="store_true", help="print the stage names (for --force)")
    cli.add_profile(parser)
    parser.add_argument("--dataset", help="dataset folder or URI (overrides the profile's)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one pipeline parameter")
    parser.add_argument("--force", action="append", metavar="STAGE", help="re-run this stage (cache off)")
    parser.add_argument(
        "--workdir", default="local_outputs", help="local: pipeline root, cache and mlflow.db"
    )
    parser.add_argument("--summary-json", help="local: also write metrics and executed stages as JSON")
    parser.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="local: run each task in a subprocess of this Python, or in the built images "
        "(python images/build.py --variant cpu)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="local: print every task's output (kfp.local's executor input and logs) instead of one "
        "line per task; without it the output goes to WORKDIR/logs/<time>/<stage>.log",
    )
    cli.add_cluster(parser)
    args = parser.parse_args(argv)

    unknown = sorted(set(args.force or ()) - set(STAGES))
    if unknown:
        parser.error(f"--force: unknown stage(s) {unknown}; stages are {sorted(STAGES)}")
    if args.list_stages:
        print("\n".join(STAGES))
        return 0
    if args.local:
        try:
            run_local(args)
        except TaskFailed as err:  # the console shows the task's last lines: kfp's traceback adds nothing
            raise SystemExit(f"lead-msmarco: {err}") from None
        return 0
    values = parameters(args)
    pipeline, _ = build_pipeline(force=frozenset(args.force or ()), mlflow_tracking_uri=args.mlflow_uri)
    return cli.compile_or_submit(
        parser, args, pipeline, values, run_name=f"lead-{args.profile}", what=f"profile {args.profile}"
    )


if __name__ == "__main__":
    sys.exit(main())
