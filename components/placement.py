"""Where and how a pipeline task runs: its resources, GPUs, MLflow wiring and caching.

Both pipelines (lead_msmarco, lead_quality) place every task through one `TaskPlacer`, so GPU
requests, tolerations and tracking are wired the same way everywhere.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

# Components whose work runs on an accelerator.
GPU_COMPONENTS = frozenset({"train", "distill", "encode", "search", "rerank"})
# (cpu, memory) requests per component, sized for the msmarco profile (8.8M passages, 503k train
# queries, 6,980 dev queries). The CPU stages' figures are benchmarks/scale.py's (benchmarks/README.md,
# "Scale"), extrapolated from 100k-1M passages with lead_core.resources.PEAK_MODELS (est = estimate at
# full size); those stages are single-threaded unless noted.
RESOURCES: dict[str, tuple[str, str]] = {
    "identity": ("1", "1Gi"),
    # the corpus streamed into Parquet once: 0.62 GiB peak at 1M passages, est 2.2 GiB; 8 CPU-s per
    # 1M passages (est 71 CPU-s)
    "ingest-corpus": ("1", "3Gi"),
    # a split against it: the corpus's ids as 8-byte hashes (70 MB at 8.8M) and the split's queries
    # and qrels; not measured apart, kept at the corpus ingest's request
    "ingest": ("1", "3Gi"),
    "backbone": ("1", "8Gi"),
    # bm25-eval: index build 3.07 GiB at 1M (est 23.9 GiB) + 6,980 queries with the TREC file (est
    # 2.0 GiB) = est 25.9 GiB; build 112 CPU-s at 1M (est ~17 CPU-min), search est 11 ms CPU/query
    "bm25": ("1", "32Gi"),
    # build + save: 3.28 GiB at 1M, est 26.0 GiB; 139 CPU-s at 1M, est ~19 CPU-min
    "bm25-index": ("1", "32Gi"),
    # loaded index 1.77 GiB at 1M with 2k queries (est 9.1 GiB) + 12.4 KB per query: est 14.9 GiB for
    # all 503k queries in one shard; numba, one thread: 729 queries/CPU-s at 1M, est 11 ms CPU/query at
    # 8.8M (1.6 CPU-h for 503k). Thread scaling was not measurable on the shared 2-core machine.
    "bm25-shard": ("4", "16Gi"),
    # no TREC export in the pipeline (it sorts the whole run in memory: 294 B per row measured,
    # 2M-10M rows, est 138 GiB for 503M rows); the run is streamed a batch at a time and the
    # groups of 503k queries x 100 negatives are ~50M ids: est < 2 GiB (not measured at full size)
    "bm25-merge": ("1", "4Gi"),
    "bm25-triples": ("1", "16Gi"),
    # 2.97 GiB for a 30M-row run, 100 B per row: est 47 GiB for 503k x 1000 rows; est ~4 CPU-min
    "mine": ("1", "56Gi"),
    "index": ("4", "64Gi"),
    # 1.81 GiB for 6,980 x 1000 rows (est 3.4 GiB with a baseline run); 5 CPU-s
    "evaluate": ("1", "4Gi"),
    "report": ("1", "4Gi"),
    "export": ("2", "8Gi"),
    "train": ("8", "64Gi"),
    "distill": ("8", "64Gi"),
    "untrained": ("1", "8Gi"),
    "encode": ("8", "32Gi"),
    "search": ("8", "64Gi"),
    "rerank": ("8", "32Gi"),
}
# Components that run every time (never from the cache): their outputs are what the cache keys of
# the stages reading data outside their input artifacts follow (dataset and backbone sources).
UNCACHED_COMPONENTS = frozenset({"identity"})
# The ConfigMap that deploy/base/kfp-artifact-store.yaml creates: MLFLOW_TRACKING_URI and
# MLFLOW_EXPERIMENT_NAME for every task (optional: without it tracking is off).
MLFLOW_CONFIG_MAP = "lead-tracking"
# The secret deploy/base/secret.example.yaml defines next to it: the MLflow user the tasks log as
# (MLFLOW_TRACKING_USERNAME/PASSWORD; the deployed server requires authentication).
MLFLOW_CREDENTIALS_SECRET = "lead-mlflow-tracking"


class TaskPlacer:
    """Names a task, requests its resources and wires its environment; remembers stage names.

    accelerator_type, gpu_count: pipeline parameters (or constants) for the GPU stages.
    mlflow_tracking_uri: compiled into every task when given (KFP cannot feed a run-time
        parameter into an environment variable); else read from the MLFLOW_CONFIG_MAP ConfigMap.
    fingerprint: LEAD_CODE_FINGERPRINT on every task, so local cache entries die with code edits.
    force: stage names whose cache is disabled.
    stages: filled with stage (display) name -> compiled task name.
    images: image reference -> the image to run instead (see below).
    """

    def __init__(
        self,
        accelerator_type,
        gpu_count,
        mlflow_tracking_uri: str = "",
        fingerprint: str = "",
        force: frozenset[str] | set[str] = frozenset(),
        stages: dict[str, str] | None = None,
        images: dict[str, str] | None = None,
    ):
        self.accelerator_type = accelerator_type
        self.gpu_count = gpu_count
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.fingerprint = fingerprint
        self.force = frozenset(force)
        # stage (display) name -> compiled task name; pass a dict to read it after compilation.
        self.stages: dict[str, str] = {} if stages is None else stages
        # image reference -> the image the task runs in instead (local runs: the CPU image for GPU
        # stages on a machine without a GPU); set on the task's own copy of its container spec.
        self.images: dict[str, str] = dict(images or {})

    def identity(self, name: str, source, kind: str):
        """The identity of a `kind` source ("dataset" or "backbone") resolved by a task `name` that
        never comes from the cache; pass it to the stage that reads `source`, so that stage's cache
        key follows the contents (changed data re-runs it and its descendants)."""
        from components.identity import identity

        return self(name, identity(source=source, kind=kind)).output

    def __call__(self, name: str, task: dsl.PipelineTask) -> dsl.PipelineTask:
        if name in self.stages:
            raise ValueError(f"stage name {name!r} used twice")
        component = task.component_spec.name
        cpu, memory = RESOURCES[component]
        task.set_display_name(name).set_cpu_request(cpu).set_memory_request(memory)
        # The stage compares its estimated peak memory with this before it starts (lead_core.resources).
        task.set_env_variable("LEAD_MEMORY_REQUEST", memory)
        if component in GPU_COMPONENTS:
            task.set_accelerator_type(self.accelerator_type).set_accelerator_limit(self.gpu_count)
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        if self.mlflow_tracking_uri:
            task.set_env_variable("MLFLOW_TRACKING_URI", self.mlflow_tracking_uri)
        else:
            kubernetes.use_config_map_as_env(
                task,
                MLFLOW_CONFIG_MAP,
                {
                    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
                    "MLFLOW_EXPERIMENT_NAME": "MLFLOW_EXPERIMENT_NAME",
                },
                optional=True,
            )
        # Optional like the ConfigMap: an open server, or none, needs no credentials.
        kubernetes.use_secret_as_env(
            task,
            MLFLOW_CREDENTIALS_SECRET,
            {
                "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
            },
            optional=True,
        )
        # The MLflow run of this stage is named after the step (a constant: caching is unaffected).
        task.set_env_variable("LEAD_STAGE_NAME", name)
        # The KFP run id, to group stage runs in MLflow (from a pod label: in no cache key).
        kubernetes.use_field_path_as_env(task, "KFP_RUN_ID", "metadata.labels['pipeline/runid']")
        if self.fingerprint:
            task.set_env_variable("LEAD_CODE_FINGERPRINT", self.fingerprint)
        if task.container_spec is not None and task.container_spec.image in self.images:
            task.container_spec.image = self.images[task.container_spec.image]
        if name in self.force or component in UNCACHED_COMPONENTS:
            task.set_caching_options(False)
        self.stages[name] = task.name
        return task
