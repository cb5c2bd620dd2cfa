"""The stages both pipelines (lead_msmarco, lead_quality) wire alike: ingest, backbones, training,
retrieval, mining, reranking and evaluation over one dataset's train and evaluation splits.

Used inside a `@dsl.pipeline` function: `Wiring` adds tasks to the pipeline being built, each
placed (named, resourced, tracked) by the pipeline's one `TaskPlacer`. Tasks are added in call
order, and that order fixes their compiled names (search, search-2, ...), so the call order of a
pipeline is part of its compiled spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset

import components as c
from components.placement import TaskPlacer


class Wiring:
    """The shared stages of a pipeline over one dataset, placed through `place`.

    Made inside the pipeline function from its arguments (`Wiring(place, locals())` before the
    function defines anything else: the pipeline parameters by name, of which PARAMETERS are read):
    resolves the dataset's identity (task `identity-dataset`, never cached), ingests the corpus the
    splits share once (task `ingest-corpus`: one `corpus` artifact, which every stage that reads
    passages takes) and both splits' queries and qrels against it (tasks `ingest-train`,
    `ingest-eval`); their cache keys follow the dataset's contents.
    Every training run gets `train_options` and the same batch (`batch_size` queries with
    `train_negatives` negatives each) and `seed`; BM25 and mining use `seed` too.
    """

    # The pipeline parameters the shared stages read: both pipelines have them, by these names.
    PARAMETERS = (
        "dataset_uri",
        "dataset_layout",
        "train_split",
        "eval_split",
        "drop_unknown_qrels",
        "train_options",
        "batch_size",
        "train_negatives",
        "seed",
    )

    def __init__(self, place: TaskPlacer, parameters: Mapping[str, Any]):
        missing = [name for name in self.PARAMETERS if name not in parameters]
        if missing:
            raise TypeError(f"Wiring: the pipeline has no parameter(s) {missing}")
        values = {name: parameters[name] for name in self.PARAMETERS}
        self.place = place
        self.train_options = values["train_options"]
        self.seed = values["seed"]
        # lead_core.train.Config fields every training run shares (after its own, in this order).
        self.batch = {
            "batch_size": values["batch_size"],
            "num_negatives": values["train_negatives"],
            "seed": self.seed,
        }
        # Sources outside the artifacts enter the cache keys by their run-time identity (never cached).
        self.dataset_identity = place.identity("identity-dataset", values["dataset_uri"], "dataset")
        self.corpus = place(
            "ingest-corpus",
            c.ingest_corpus(
                source=values["dataset_uri"],
                layout=values["dataset_layout"],
                dataset_identity=self.dataset_identity,
            ),
        ).outputs["corpus"]
        self.train_data, self.eval_data = (
            place(
                f"ingest-{name}",
                c.ingest(
                    source=values["dataset_uri"],
                    layout=values["dataset_layout"],
                    split=split,
                    drop_unknown_qrels=values["drop_unknown_qrels"],
                    dataset_identity=self.dataset_identity,
                    corpus=self.corpus,
                ),
            ).outputs["data"]
            for name, split in (("train", values["train_split"]), ("eval", values["eval_split"]))
        )

    def backbone(self, role: str, source) -> Any:
        """The initial model of `role` from a backbone source (tasks `identity-<role>`, `backbone-<role>`)."""
        source_identity = self.place.identity(f"identity-{role}", source, "backbone")
        return self.place(
            f"backbone-{role}", c.backbone(source=source, source_identity=source_identity)
        ).outputs["model"]

    def bm25(self, name: str, data, k, negatives, num_negatives) -> Any:
        """Task `name`: BM25's top k of `data`'s queries (output "run") and their negative pools
        ("groups": BM25 or random negatives)."""
        return self.place(
            name,
            c.bm25(
                corpus=self.corpus,
                data=data,
                k=k,
                negatives=negatives,
                num_negatives=num_negatives,
                seed=self.seed,
            ),
        )

    def bm25_groups(self, name: str, data, k, negatives, num_negatives, shards, triples_uri) -> Any:
        """`data`'s training groups. negatives "triples": read from the official triples file (tasks
        `identity-triples`, `<name>-triples`); else BM25 or random negatives fanned out over `shards`
        query shards: the index built once (`<name>-index`), one `<name>-shard` task per shard
        (dsl.ParallelFor), `<name>-merge` writing what one bm25 task writes. The branch that ran
        returns its groups' URI and `<name>-groups` imports it (kfp.local resolves dsl.OneOf over
        parameters, not over artifacts)."""
        with dsl.If(negatives == "triples"):
            identity = self.place.identity("identity-triples", triples_uri, "dataset")
            official = self.place(
                f"{name}-triples",
                c.bm25_triples(
                    corpus=self.corpus,
                    data=data,
                    triples_uri=triples_uri,
                    num_negatives=num_negatives,
                    triples_identity=identity,
                ),
            ).outputs["Output"]
        with dsl.Else():
            index = self.place(
                f"{name}-index", c.bm25_index(corpus=self.corpus, data=data, num_shards=shards)
            )
            with dsl.ParallelFor(items=index.outputs["Output"]) as shard:
                part = self.place(
                    f"{name}-shard",
                    c.bm25_shard(
                        corpus=self.corpus,
                        data=data,
                        index=index.outputs["index"],
                        shard=shard,
                        k=k,
                        negatives=negatives,
                        num_negatives=num_negatives,
                        seed=self.seed,
                    ),
                )
            retrieved = self.place(
                f"{name}-merge",
                c.bm25_merge(
                    corpus=self.corpus,
                    data=data,
                    shard_runs=dsl.Collected(part.outputs["run"]),
                    shard_groups=dsl.Collected(part.outputs["groups"]),
                ),
            ).outputs["Output"]
        groups = dsl.importer(artifact_uri=dsl.OneOf(official, retrieved), artifact_class=Dataset)
        groups.set_display_name(f"{name}-groups")
        return groups.output

    def train(self, name: str, groups, init, architecture, max_steps, lr) -> Any:
        """Task `name`: `architecture` (de, cb or ce) trained from `init` on the train split's
        `groups` without a teacher (phase-1 DE, warm-ups); its output model."""
        return self.place(
            name,
            c.train(
                groups=groups,
                corpus=self.corpus,
                data=self.train_data,
                init=init,
                options=self.train_options,
                params={"architecture": architecture, "max_steps": max_steps, "lr": lr, **self.batch},
            ),
        ).outputs["model"]

    def distill(self, groups, student, teacher, params) -> Any:
        """Task `distill`: the teacher distilled into the student on the train split's `groups`;
        `params` are its lead_core.train.Config fields (method, steps, lr, batch, seed ...)."""
        return self.place(
            "distill",
            c.distill(
                groups=groups,
                corpus=self.corpus,
                data=self.train_data,
                student=student,
                teacher=teacher,
                options=self.train_options,
                params=params,
            ),
        )

    def index(self, name: str, model) -> Any:
        """The corpus encoded by `model` and indexed (tasks `<name>-encode`, `<name>-index`)."""
        embeddings = self.place(f"{name}-encode", c.encode(model=model, corpus=self.corpus)).outputs[
            "embeddings"
        ]
        return self.place(f"{name}-index", c.index(embeddings=embeddings)).outputs["index"]

    def search(self, name: str, index, model, data, k) -> Any:
        """Task `name`: `model`'s top k in `index` for `data`'s queries (a run)."""
        return self.place(name, c.search(index=index, model=model, data=data, k=k)).outputs["run"]

    def retrieve(self, name: str, model, k) -> tuple[Any, Any]:
        """(index, run): the corpus indexed by `model`, and its top k for the evaluation queries
        (tasks `<name>-encode`, `<name>-index`, `<name>-search`)."""
        index = self.index(name, model)
        return index, self.search(f"{name}-search", index, model, self.eval_data, k)

    def mine(self, run, depth, skip, num_negatives) -> Any:
        """Task `mine`: hard negatives of the train queries from `run`'s ranks skip+1..depth (groups)."""
        return self.place(
            "mine",
            c.mine(
                run=run,
                data=self.train_data,
                depth=depth,
                skip=skip,
                num_negatives=num_negatives,
                seed=self.seed,
            ),
        ).outputs["groups"]

    def rerank(self, name: str, model, run, k) -> Any:
        """Task `name`: `model` re-scores the top k of `run` (an evaluation run); the reranked run."""
        return self.place(
            name, c.rerank(model=model, run=run, corpus=self.corpus, data=self.eval_data, k=k)
        ).outputs["reranked"]

    def evaluate(self, name: str, run, system: str, measures, relevance_level, baseline=None) -> Any:
        """Task `name`: `run`'s measures on the evaluation qrels, as `system` in its table, with
        paired t-tests against `baseline` (a run) when given; the Metrics artifact."""
        extra = {"baseline": baseline} if baseline is not None else {}
        return self.place(
            name,
            c.evaluate(
                run=run,
                data=self.eval_data,
                name=system,
                measures=measures,
                relevance_level=relevance_level,
                **extra,
            ),
        ).outputs["metrics"]
