"""`lead train`: one trainer for every training run of the paper (§4.2.2) – `Config` and `run`.

  - phase-1 dual encoder and the teacher/student warm-ups: method "none" (contrastive loss on the
    final layer, Eq. 11 without a teacher), DE, CB or CE, any backbone;
  - distillation: method "lead" (Eq. 4–12, every ablation switch), "rd" (response-based) or
    "fd" (attention maps; same tokenizer only).

The loop is `lead_core.train.trainer`; what each method minimises, `lead_core.losses.objectives`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from lead_core import distributed
from lead_core.artifacts import atomic_outputs, check_writable
from lead_core.config import ConfigError, to_dict
from lead_core.tracking import StageTracker, stage_run
from lead_core.train.trainer import StepCallback, Trainer, TrainOutputs

Method = Literal["none", "lead", "rd", "fd"]
Selection = Literal["random", "weighted", "last", "skip"]
Precision = Literal["auto", "fp32", "bf16"]


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class Config:
    """Training config. Steps are optimizer steps (each `grad_accum` micro-batches)."""

    groups: str = _help("training groups Parquet (schema 'groups'): query, positives, negatives")
    corpus: str = _help("corpus Parquet (schema 'corpus') holding every doc id named in the groups")
    queries: str = _help("queries Parquet (schema 'queries') holding every query id named in the groups")
    out: str = _help("output lead model directory (the trained student; written atomically)")
    model: str = _help(
        "initial model: a saved lead model directory, or a Hugging Face backbone folder/hub id "
        "together with --architecture"
    )
    architecture: Literal["de", "cb", "ce"] | None = _help(
        "de | cb | ce: model type when --model is a backbone (checked against a lead model dir)",
        default=None,
    )
    teacher: str | None = _help("teacher: a saved lead model directory (methods lead, rd, fd)", default=None)
    out_teacher: str | None = _help(
        "where to save the teacher after training (useful with joint LEAD training)", default=None
    )
    method: Method = _help(
        "none: contrastive training without a teacher (phase-1 DE, warm-ups); lead: LEAD (Eq. 12); "
        "rd: response-based distillation; fd: feature-based (attention-map) distillation",
        default="none",
    )
    # LEAD options (§3.3, Tables 4–6).
    k: int = _help("LEAD: number of layer pairs distilled per step (K)", default=5)
    tau_d: float = _help("LEAD/RD: distillation temperature τ_d", default=1.0)
    tau_l: float = _help("LEAD: layer re-weighting temperature τ_l (Eq. 7)", default=10.0)
    reweight: bool = _help("LEAD: re-weight the selected layers (Eq. 7); false gives 1/K each", default=True)
    joint: bool = _help(
        "LEAD: train teacher and student jointly (false: teacher frozen, Table 6)", default=True
    )
    selection: Selection = _help("LEAD: layer selection strategy (Table 5)", default="random")
    reselect_every: int = _help("LEAD: optimizer steps between layer re-draws", default=1)
    teacher_lr: float | None = _help(
        "learning rate of the jointly trained teacher (default: --lr)", default=None
    )
    # Data.
    batch_size: int = _help("queries per micro-batch per device", default=8)
    num_negatives: int = _help(
        "negatives per query, drawn afresh every epoch from its pool (a pool smaller than this is "
        "sampled with replacement)",
        default=7,
    )
    max_steps: int = _help("optimizer steps to train; 0 means --epochs passes over the queries", default=0)
    epochs: int = _help("passes over the training queries when --max-steps is 0", default=1)
    # Optimisation.
    lr: float = _help("AdamW learning rate (peak of the linear schedule)", default=2e-5)
    warmup_ratio: float = _help("fraction of the steps with linear warm-up", default=0.1)
    weight_decay: float = _help("AdamW weight decay", default=0.0)
    adam_eps: float = _help("AdamW epsilon", default=1e-8)
    max_grad_norm: float = _help("gradient-norm clip (0 disables)", default=2.0)
    grad_accum: int = _help("micro-batches per optimizer step", default=1)
    precision: Precision = _help(
        "auto: bf16 autocast on GPU, fp32 on CPU; fp32; bf16 autocast", default="auto"
    )
    seed: int = _help("seed of the data order, negative sampling, layer selection and init", default=888)
    # Checkpoints.
    checkpoint_every: int = _help("optimizer steps between checkpoints (0: none)", default=0)
    checkpoint_dir: str | None = _help("checkpoint directory (default: <out>.checkpoints)", default=None)
    resume: bool = _help("continue from the latest checkpoint in --checkpoint-dir (if any)", default=False)
    keep_checkpoints: int = _help("checkpoints kept (the latest ones)", default=2)
    # Model overrides.
    query_max_length: int | None = _help("override the model's query length (tokens)", default=None)
    passage_max_length: int | None = _help("override the model's passage length (tokens)", default=None)
    appended_linear: list[int] = _help(
        "dimensions of linear layers appended to a student built from a backbone (§3.5.1)",
        default_factory=list,
    )
    pooling: Literal["cls", "mean"] = _help("DE pooling when building from a backbone", default="cls")
    # Runtime.
    num_workers: int = _help(
        "background threads preparing (sampling, tokenizing) the next batches", default=1
    )
    log_every: int = _help("optimizer steps between tracked metric logs (losses are averaged)", default=10)
    log_model: bool = _help("log the final model directory to the tracking run's artifacts", default=True)
    log_checkpoints: bool = _help(
        "also log each checkpoint (every --checkpoint-every steps) to the tracking run's artifacts "
        "(checkpoints/step-N: weights and optimizer state, large)",
        default=False,
    )
    progress: bool = _help("show a progress bar", default=True)
    step_log: str | None = _help(
        "write each optimizer step's losses and layer weights to this JSONL file (lead report plots it)",
        default=None,
    )

    def validate(self) -> None:
        """Check field values and combinations; raise ConfigError naming the field."""
        positive = ("batch_size", "grad_accum", "k", "reselect_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"train: --{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("num_negatives", "max_steps", "epochs", "checkpoint_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"train: --{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )
        if self.max_steps == 0 and self.epochs == 0:
            raise ConfigError("train: set --max-steps or --epochs (both are 0)")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"train: --warmup-ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.lr <= 0 or (self.teacher_lr is not None and self.teacher_lr <= 0):
            raise ConfigError("train: learning rates must be > 0")
        if self.tau_d <= 0 or self.tau_l <= 0:
            raise ConfigError("train: temperatures --tau-d and --tau-l must be > 0")
        if self.method == "none":
            if self.teacher is not None:
                raise ConfigError("train: --teacher given but --method none trains without a teacher")
        elif self.teacher is None:
            raise ConfigError(f"train: --method {self.method} needs --teacher (a saved lead model directory)")
        if self.out_teacher is not None and self.teacher is None:
            raise ConfigError("train: --out-teacher needs --teacher")
        if self.resume and self.checkpoint_every == 0 and self.checkpoint_dir is None:
            raise ConfigError("train: --resume needs --checkpoint-dir or --checkpoint-every")
        if self.log_checkpoints and self.checkpoint_every == 0:
            raise ConfigError("train: --log-checkpoints needs --checkpoint-every (the interval)")

    @property
    def checkpoint_path(self) -> str:
        return self.checkpoint_dir or f"{self.out}.checkpoints"

    @property
    def trains_teacher(self) -> bool:
        """Whether the teacher's weights change (joint LEAD training only)."""
        return self.method == "lead" and self.joint

    def trajectory_fields(self) -> dict[str, Any]:
        """The fields that determine the training trajectory (stored in and checked against
        checkpoints): all but RUNTIME_FIELDS."""
        values = to_dict(self)
        return {f.name: values[f.name] for f in fields(self) if f.name not in RUNTIME_FIELDS}


# Fields that do not change what training computes: a checkpoint may be resumed under other values.
RUNTIME_FIELDS = frozenset(
    {
        "out",
        "out_teacher",
        "checkpoint_every",
        "checkpoint_dir",
        "resume",
        "keep_checkpoints",
        "num_workers",
        "log_every",
        "log_model",
        "log_checkpoints",
        "progress",
        "step_log",  # where the log goes; a resumed run may write it elsewhere
    }
)


def run(config: Config, callbacks: Sequence[StepCallback] = ()) -> dict[str, Any]:
    """Train as `config` says; save the student to `config.out`. Returns final losses and throughput.

    `callbacks` are called after every optimizer step with a StepInfo (tests use them to stop a
    run or to record losses). Under torchrun every process calls run(); rank 0 writes outputs.
    """
    config.validate()
    ctx = distributed.setup()
    try:
        if not ctx.is_main:
            return Trainer(config, ctx, callbacks).train(StageTracker())
        # Every output is checked before the models load; all are committed together at the end.
        outputs = atomic_outputs(config.out, config.out_teacher, config.step_log)
        if config.checkpoint_every:
            check_writable(Path(config.checkpoint_path) / "step-00000000")
        # One tracker for the run: a tracking failure warns once and turns it off for the rest of
        # the run, the final model upload included (lead_core.tracking), and training goes on.
        with stage_run("train", to_dict(config)) as tracker:
            with outputs as (out, out_teacher, step_log_path):
                step_log = None
                if step_log_path is not None:
                    from lead_core.report.logs import StepLogWriter  # lazy: report pulls in evaluation code

                    step_log = StepLogWriter(step_log_path)
                try:
                    trainer = Trainer(config, ctx, callbacks)
                    trainer.outputs = TrainOutputs(out, out_teacher, step_log)
                    summary = trainer.train(tracker)
                finally:
                    if step_log is not None:
                        step_log.close()
            if config.log_model:
                tracker.log_artifacts(config.out, "model")
            return summary
    finally:
        ctx.close()
