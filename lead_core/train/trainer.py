"""The training loop of `lead train`, for every method: seeding, precision, gradient accumulation,
DDP, batch prefetching, checkpoints and tracking are written once here; what a micro-batch's loss
is comes from the method's objective (`lead_core.losses.objectives`).

A step is one optimizer step over `grad_accum` micro-batches of `batch_size` queries per process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from lead_core import distributed
from lead_core.config import ConfigError
from lead_core.losses.objectives import MicroBatch, Models, build_objective
from lead_core.models import ModelConfig, build_model, load_model
from lead_core.models.encoder_model import CONFIG_FILE, EncoderModel
from lead_core.tracking import StageTracker
from lead_core.train import checkpoint as ckpt
from lead_core.train.data import Batch, BatchPlan, TrainingData

if TYPE_CHECKING:
    from lead_core.train.stage import Config

log = logging.getLogger(__name__)


@dataclass
class StepInfo:
    """What a callback sees after each optimizer step (and after that step's checkpoint)."""

    step: int  # optimizer steps done
    total_steps: int
    metrics: dict[str, float]  # this step's losses (mean over its micro-batches), on this rank
    lr: float
    epoch: int
    batch_index: int  # micro-batch index within the epoch of the step's last micro-batch
    num_passages: int  # P: passages each query was scored against (the world's batch for DE/CB)
    rank: int = 0
    world_size: int = 1
    selection: tuple[list[int], list[int]] | None = None  # LEAD (teacher, student) layers


StepCallback = Callable[[StepInfo], None]


# ------------------------------------------------------------------------------------ models
def _apply_lengths(model: EncoderModel, config: Config) -> None:
    if config.query_max_length is not None:
        model.config.query_max_length = config.query_max_length
    if config.passage_max_length is not None:
        model.config.passage_max_length = config.passage_max_length


def load_initial_model(config: Config) -> EncoderModel:
    """The model to train: a saved lead model dir, or `architecture` over a HF backbone."""
    path = Path(config.model)
    if (path / CONFIG_FILE).is_file():
        model = load_model(path)
        if config.architecture is not None and config.architecture != model.config.architecture:
            raise ConfigError(
                f"{path}: a saved {model.config.architecture!r} model, but --architecture is {config.architecture!r}"
            )
        if config.appended_linear and list(config.appended_linear) != list(model.config.appended_linear):
            raise ConfigError(
                f"{path}: saved with appended_linear {model.config.appended_linear}, but "
                f"--appended-linear is {config.appended_linear}; appended layers are set when a model is built"
            )
    else:
        if config.architecture is None:
            raise ConfigError(
                f"--model {config.model}: not a lead model directory (no {CONFIG_FILE}); to build a model "
                "from a Hugging Face backbone give --architecture de|cb|ce"
            )
        model_config = ModelConfig(
            architecture=config.architecture,
            backbone=config.model,
            pooling=config.pooling,
            appended_linear=list(config.appended_linear),
        )
        try:
            model = build_model(model_config)
        except OSError as err:  # not a folder and not a reachable hub id
            raise FileNotFoundError(
                f"--model {config.model}: neither a lead model directory nor a loadable backbone ({err})"
            ) from err
    _apply_lengths(model, config)
    return model


def load_teacher(config: Config) -> EncoderModel:
    path = Path(config.teacher)
    if not (path / CONFIG_FILE).is_file():
        raise ConfigError(
            f"--teacher {path}: not a lead model directory (no {CONFIG_FILE}); train the teacher with "
            "`lead train` (warm-up) first"
        )
    model = load_model(path)
    _apply_lengths(model, config)
    return model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------ batches
class Prefetcher:
    """Prepares micro-batches (sampling + both models' tokenization) ahead in one background thread.

    One thread, because a fast tokenizer must not be called from several threads at once; batches
    are a pure function of their index, so prefetching never changes what is trained.
    """

    def __init__(self, make: Callable[[int], Any], start: int, stop: int, depth: int):
        self._make, self._next, self._stop, self._depth = make, start, stop, depth
        self._pending: list[Future] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-batches") if depth else None
        self._fill()

    def _fill(self) -> None:
        if self._pool is None:
            return
        while len(self._pending) < self._depth and self._next < self._stop:
            self._pending.append(self._pool.submit(self._make, self._next))
            self._next += 1

    def get(self):
        if self._pool is None:
            item = self._make(self._next)
            self._next += 1
            return item
        item = self._pending.pop(0).result()
        self._fill()
        return item

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)


# ------------------------------------------------------------------------------------ trainer
@dataclass
class _Prepared:
    batch: Batch
    micro_batch: MicroBatch  # what the objective sees: geometry and both models' tokenized inputs


@dataclass
class TrainOutputs:
    """Where the trainer writes: `run` points these at the temporaries of its atomic outputs."""

    student: Path
    teacher: Path | None = None
    step_log: Any = None  # a lead_core.report.logs.StepLogWriter, written before each checkpoint


@dataclass
class _History:
    """The first and last step's metrics and every total loss (for the summary), and the steps
    since the last tracked log (averaged into one log every --log-every steps)."""

    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    totals: list[float] = field(default_factory=list)
    window: list[dict[str, float]] = field(default_factory=list)

    def record(self, metrics: dict[str, float]) -> None:
        self.first = self.first or dict(metrics)
        self.last = metrics
        self.totals.append(metrics["loss/total"])
        self.window.append(metrics)

    def take_window(self) -> dict[str, float]:
        """Each metric's mean over the steps since the last call."""
        rows, self.window = self.window, []
        keys = {k for row in rows for k in row}
        return {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}


class Trainer:
    last_checkpoint: Path | None = None  # the newest checkpoint this process wrote (rank 0)

    def __init__(self, config: Config, ctx: distributed.DistContext, callbacks: Sequence[StepCallback] = ()):
        self.config, self.ctx, self.callbacks = config, ctx, list(callbacks)
        self.device = ctx.device
        seed_everything(config.seed)

        self.data = TrainingData(config.groups, config.corpus, config.queries, config.num_negatives)
        self.plan = BatchPlan(self.data, config.batch_size, config.seed, ctx.rank, ctx.world_size)
        per_epoch = self.plan.batches_per_epoch // config.grad_accum
        self.total_steps = config.max_steps or config.epochs * per_epoch
        if self.total_steps == 0:
            raise ConfigError(
                f"{config.groups}: {len(self.data)} queries give {self.plan.batches_per_epoch} micro-batches "
                f"per epoch, fewer than one optimizer step of --grad-accum {config.grad_accum}"
            )
        self.queries_per_step = config.batch_size * ctx.world_size * config.grad_accum

        self.student = load_initial_model(config).to(self.device)
        self.teacher = load_teacher(config).to(self.device) if config.teacher else None
        self.objective = build_objective(config, self.teacher, self.student)
        self.student.train()
        if self.teacher is not None:
            if config.trains_teacher:
                self.teacher.train()
            else:
                self.teacher.eval().requires_grad_(False)
        self.models = Models(self._student_forward, self._teacher_forward if self.teacher else None)
        self.autocast_dtype = self._autocast_dtype()

        self.student_ddp = self._wrap(self.student)
        self.teacher_ddp = self.teacher
        groups = self._decay_groups(self.student, config.lr)
        if config.trains_teacher:
            self.teacher_ddp = self._wrap(self.teacher)
            groups += self._decay_groups(self.teacher, config.teacher_lr or config.lr)
        # The fused CUDA kernel: one launch for all parameters instead of several per tensor.
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, eps=config.adam_eps, fused=fused)
        warmup = math.ceil(config.warmup_ratio * self.total_steps)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, self.total_steps)
        self.trainable = [p for g in groups for p in g["params"]]
        self.step = 0
        self.outputs = TrainOutputs(
            Path(config.out), Path(config.out_teacher) if config.out_teacher else None
        )

    # -- set-up helpers --------------------------------------------------------------------------
    def _autocast_dtype(self) -> torch.dtype | None:
        precision = self.config.precision
        if precision == "bf16" or (precision == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None

    def _decay_groups(self, model: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
        """AdamW groups: no weight decay on biases and normalisation weights (the usual convention)."""
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.dim() < 2 or "norm" in name.lower() else decay).append(param)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay, "lr": lr}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
        return groups

    def _wrap(self, model: EncoderModel):
        if not self.ctx.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    @property
    def gather(self):
        return distributed.gather_with_grad if self.ctx.enabled else None

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _gradient_sync(self, last_micro: bool):
        """DDP all-reduces gradients on a step's last micro-batch only (no_sync before it)."""
        stack = contextlib.ExitStack()
        if not last_micro and self.ctx.enabled:
            for model in (self.student_ddp, self.teacher_ddp):
                if isinstance(model, DistributedDataParallel):
                    stack.enter_context(model.no_sync())
        return stack

    # -- data and forward passes -----------------------------------------------------------------
    def _prepare(self, micro_batch: int) -> _Prepared:
        batch = self.plan.batch(micro_batch)
        student = self.student.prepare(batch.queries, batch.passages)
        teacher = self.teacher.prepare(batch.queries, batch.passages) if self.teacher is not None else None
        geometry = (len(batch.queries), batch.group_size, self.ctx.rank)
        return _Prepared(batch, MicroBatch(*geometry, student, teacher))

    def _student_forward(self, inputs, layers=None, output_attentions: bool = False):
        return self.student_ddp(
            inputs, layers=layers, gather=self.gather, output_attentions=output_attentions
        )

    def _teacher_forward(self, inputs, layers=None, output_attentions: bool = False):
        if self.config.trains_teacher:
            return self.teacher_ddp(
                inputs, layers=layers, gather=self.gather, output_attentions=output_attentions
            )
        with torch.no_grad():
            return self.teacher(
                inputs, layers=layers, gather=self.gather, output_attentions=output_attentions
            )

    # -- checkpoints -----------------------------------------------------------------------------
    def _checkpoint_models(self) -> dict[str, EncoderModel]:
        models = {"student": self.student}
        if self.config.trains_teacher:
            models["teacher"] = self.teacher
        return models

    def save_checkpoint(self) -> None:
        rng_states = distributed.gather_objects(ckpt.rng_state())
        if self.ctx.is_main:
            fields = self.config.trajectory_fields()
            micro = self.step * self.config.grad_accum
            epoch, index = self.plan.position(micro)
            state = {
                "step": self.step,
                "micro_batch": micro,
                "data_position": {"epoch": epoch, "batch_index": index},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_states,
                **self.objective.state(),  # the layer-selection stream and current selection
                "world_size": self.ctx.world_size,
                "config": fields,
                "config_hash": ckpt.config_hash(fields),
            }
            path = ckpt.save_checkpoint(
                self.config.checkpoint_path,
                self.step,
                self._checkpoint_models(),
                state,
                self.config.keep_checkpoints,
                step_log=self.outputs.step_log.path if self.outputs.step_log is not None else None,
            )
            log.info("checkpoint %s", path)
            self.last_checkpoint = Path(path)
        self.ctx.barrier()

    def _maybe_checkpoint(self, tracker: StageTracker) -> None:
        every = self.config.checkpoint_every
        if not every or self.step % every != 0:
            return
        self.save_checkpoint()
        if self.config.log_checkpoints and self.last_checkpoint is not None:
            checkpoint = self.last_checkpoint
            tracker.log_artifacts(checkpoint, f"checkpoints/{checkpoint.name}")

    def maybe_resume(self) -> None:
        config = self.config
        directory = Path(config.checkpoint_path)
        latest = ckpt.latest_checkpoint(directory)
        if not config.resume:
            if latest is not None and config.checkpoint_every:
                raise FileExistsError(
                    f"{directory}: holds checkpoints of an earlier run ({latest.name}); pass --resume to "
                    "continue it, or remove the directory / choose another --checkpoint-dir"
                )
            return
        if latest is None:
            log.info("%s: no checkpoint to resume from; starting from step 0", directory)
            return
        state = ckpt.load_state(latest)
        ckpt.check_compatible(latest, state, config.trajectory_fields(), self.ctx.world_size)
        for name, model in self._checkpoint_models().items():
            saved = load_model(latest / name)
            model.load_state_dict(saved.state_dict(), strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.objective.load_state(state)
        ckpt.set_rng_state(state["rng"][self.ctx.rank])
        self.step = state["step"]
        if self.outputs.step_log is not None:
            saved_log = latest / ckpt.STEP_LOG_FILE
            if saved_log.is_file():
                self.outputs.step_log.restore(saved_log)  # steps 1..step; later ones are redone
            else:
                log.warning(
                    "%s: no step log in the checkpoint; --step-log starts at step %d", latest, self.step + 1
                )
        log.info("resumed from %s (step %d of %d)", latest, self.step, self.total_steps)

    # -- the loop --------------------------------------------------------------------------------
    def train(self, tracker: StageTracker) -> dict[str, Any]:
        """Run the remaining optimizer steps, save the models, return the summary."""
        self.maybe_resume()
        accum = self.config.grad_accum
        batches = Prefetcher(
            self._prepare, self.step * accum, self.total_steps * accum, self.config.num_workers
        )
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=f"train {self.config.method}",
            disable=not (self.config.progress and self.ctx.is_main),
            dynamic_ncols=True,
        )
        history = _History()
        started, start_step = time.perf_counter(), self.step
        try:
            while self.step < self.total_steps:
                info = self._optimizer_step(batches)
                self._log_step(info, history, tracker, bar)
                if self.outputs.step_log is not None:
                    self.outputs.step_log(info)  # before the checkpoint, which keeps a copy
                self._maybe_checkpoint(tracker)
                for callback in self.callbacks:
                    callback(info)
        finally:
            batches.close()
            bar.close()
        return self._finish(history, self.step - start_step, time.perf_counter() - started)

    def _optimizer_step(self, batches: Prefetcher) -> StepInfo:
        """One optimizer step over `grad_accum` micro-batches; its metrics are their means."""
        accum = self.config.grad_accum
        tick = time.perf_counter()
        self.objective.begin_step(self.step)
        sums: dict[str, float] = {}
        for micro in range(accum):
            prepared = batches.get()
            with self._gradient_sync(last_micro=micro == accum - 1):
                with self._autocast():
                    loss = self.objective.loss(prepared.micro_batch, self.models)
                (loss.total / accum).backward()
            values = torch.stack([t.detach().float() for t in loss.metrics.values()]).tolist()
            for name, value in zip(loss.metrics, values):
                sums[name] = sums.get(name, 0.0) + value / accum
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        queries_per_s = self.queries_per_step / max(time.perf_counter() - tick, 1e-9)
        return StepInfo(
            step=self.step,
            total_steps=self.total_steps,
            metrics={**sums, **self.objective.selection_metrics(), "lr": lr, "queries_per_s": queries_per_s},
            lr=lr,
            epoch=prepared.batch.epoch,
            batch_index=prepared.batch.index,
            num_passages=loss.num_passages,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            selection=self.objective.selection,
        )

    def _log_step(self, info: StepInfo, history: _History, tracker: StageTracker, bar) -> None:
        history.record(info.metrics)
        if info.step % self.config.log_every == 0 or info.step == self.total_steps:
            tracker.log_metrics(history.take_window(), step=info.step)
        bar.set_postfix(loss=f"{info.metrics['loss/total']:.4f}", qps=f"{info.metrics['queries_per_s']:.1f}")
        bar.update(1)

    def _finish(self, history: _History, steps_run: int, seconds: float) -> dict[str, Any]:
        config = self.config
        if self.ctx.is_main:
            self.student.save(self.outputs.student)
            if self.outputs.teacher is not None:
                self.teacher.save(self.outputs.teacher)
        self.ctx.barrier()
        summary: dict[str, Any] = {f"final/{k}": v for k, v in history.last.items()}
        summary.update({f"first/{k}": v for k, v in history.first.items()})
        tail = history.totals[-max(1, len(history.totals) // 10) :] if history.totals else []
        summary.update(
            {
                "steps": self.step,
                "steps_run": steps_run,
                "seconds": seconds,
                "queries_per_s": steps_run * self.queries_per_step / seconds if seconds > 0 else 0.0,
                "loss_last_mean": float(np.mean(tail)) if tail else float("nan"),
                "out": str(config.out),
                "out_teacher": config.out_teacher,
                "world_size": self.ctx.world_size,
            }
        )
        return summary
