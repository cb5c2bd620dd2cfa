"""`lead train`: one trainer for every training run of the paper (§4.2.2).

  - phase-1 dual encoder and the teacher/student warm-ups: method "none" (contrastive loss on the
    final layer, Eq. 11 without a teacher), DE, CB or CE, any backbone;
  - distillation: method "lead" (Eq. 4–12, every ablation switch), "rd" (response-based) or
    "fd" (attention maps; same tokenizer only).

Seeding, precision, gradient accumulation, DDP, checkpoints and tracking are written once here.
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
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from lead_core import distributed
from lead_core.artifacts import atomic_outputs, check_writable
from lead_core.config import ConfigError, to_dict
from lead_core.losses import (
    contrastive_loss,
    lead_loss,
    response_distillation_loss,
    select_layers,
    teacher_layer_weights,
)
from lead_core.losses.feature import (
    check_same_tokenizer,
    feature_distillation_loss,
    shared_token_prefix,
)
from lead_core.models import ModelConfig, build_model, load_model
from lead_core.models.encoder_model import CONFIG_FILE, EncoderModel
from lead_core.tracking import stage_run
from lead_core.train import checkpoint as ckpt
from lead_core.train.config import Config, trajectory_fields
from lead_core.train.data import Batch, BatchPlan, TrainingData

log = logging.getLogger(__name__)

# A second, independent stream for layer selection (same on every rank, so ranks align the same
# layers); seeded from the run seed and this constant.
_SELECTION_STREAM = 0x5E1EC7


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


def _unwrap(model: torch.nn.Module) -> EncoderModel:
    return model.module if isinstance(model, DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ batch helpers
def positive_mask(num_queries: int, group_size: int, num_passages: int, rank: int, device) -> Tensor:
    """bool [Q, P]: query i's positive is passage i*G of its rank's block (or 0 of its own group).

    P = G (cross-encoder: own group), Q*G (local batch) or Q*G*world (gathered, rank-major).
    """
    mask = torch.zeros(num_queries, num_passages, dtype=torch.bool, device=device)
    offset = 0 if num_passages in (group_size, num_queries * group_size) else rank * num_queries * group_size
    step = 0 if num_passages == group_size else group_size
    rows = torch.arange(num_queries, device=device)
    mask[rows, offset + rows * step] = True
    return mask


def own_group(scores: Tensor, group_size: int, rank: int) -> Tensor:
    """Restrict [L, Q, P] in-batch scores (P = Q*G or Q*G*world) to each query's own group: [L, Q, G].

    Used when a cross-encoder (which sees only its own group) is paired with a DE/CB model.
    """
    layers, queries, passages = scores.shape
    offset = 0 if passages == queries * group_size else rank * queries * group_size
    index = offset + torch.arange(queries, device=scores.device)[:, None] * group_size
    index = index + torch.arange(group_size, device=scores.device)[None, :]
    return scores.gather(2, index.expand(layers, queries, group_size))


def _full_layers(scores: Tensor, layers: Sequence[int], num_layers: int) -> Tensor:
    """Place [len(layers), Q, P] computed layers into an [N, Q, P] tensor (zeros elsewhere).

    lead_loss reads only the selected layers and the last one; the others are placeholders.
    """
    full = scores.new_zeros((num_layers, *scores.shape[1:]))
    full[list(layers)] = scores
    return full


def _needed(selected: Sequence[int], num_layers: int) -> list[int]:
    return sorted({*selected, num_layers - 1})


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


class SafeTracker:
    """Forwards to the stage tracker; the first failure (server gone) prints one warning and
    turns tracking off, so training goes on."""

    def __init__(self, tracker) -> None:
        self._tracker, self._failed = tracker, False

    def _call(self, name: str, *args, **kwargs) -> None:
        if self._failed or self._tracker is None:
            return
        try:
            getattr(self._tracker, name)(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            self._failed = True
            log.warning(
                "tracking failed (%s: %s); training goes on without tracking", type(err).__name__, err
            )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", metrics, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        self._call("log_params", params)

    def log_artifacts(self, path, artifact_path: str | None = None) -> None:
        self._call("log_artifacts", path, artifact_path)


# ------------------------------------------------------------------------------------ trainer
@dataclass
class _Prepared:
    batch: Batch
    student: dict[str, Tensor]
    teacher: dict[str, Tensor] | None = None


@dataclass
class TrainOutputs:
    """Where the trainer writes: `run` points these at the temporaries of its atomic outputs."""

    student: Path
    teacher: Path | None = None
    step_log: Any = None  # a lead_core.report.logs.StepLogWriter, written before each checkpoint


@dataclass
class _History:
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    totals: list[float] = field(default_factory=list)


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

        self.student = load_initial_model(config).to(self.device)
        self.teacher = load_teacher(config).to(self.device) if config.teacher else None
        self._check_pair()
        self.student.train()
        if self.teacher is not None:
            if config.trains_teacher:
                self.teacher.train()
            else:
                self.teacher.eval().requires_grad_(False)

        self.selection_rng = np.random.default_rng([config.seed, _SELECTION_STREAM])
        self.selection: tuple[list[int], list[int]] | None = None
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
    def _check_pair(self) -> None:
        config, teacher, student = self.config, self.teacher, self.student
        if teacher is None:
            return
        arch_t, arch_s = teacher.config.architecture, student.config.architecture
        if arch_s == "ce" and arch_t != "ce":
            raise ConfigError(
                f"a cross-encoder student scores only its own group; a {arch_t!r} teacher is not supported with it"
            )
        if config.method == "lead":
            n, m = teacher.num_layers, student.num_layers
            if not n >= m >= config.k:
                raise ConfigError(
                    f"LEAD needs teacher layers >= student layers >= k: teacher {config.teacher} has {n}, "
                    f"student {config.model} has {m}, --k is {config.k}"
                )
        if config.method == "fd":
            check_same_tokenizer(teacher.tokenizer, student.tokenizer)
            if arch_t == "ce" and arch_s != "ce":
                raise ConfigError(
                    "fd: a cross-encoder teacher's pair attention has no dual-encoder counterpart"
                )

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

    # -- data ------------------------------------------------------------------------------------
    def _prepare(self, micro_batch: int) -> _Prepared:
        batch = self.plan.batch(micro_batch)
        student = self.student.prepare(batch.queries, batch.passages)
        teacher = self.teacher.prepare(batch.queries, batch.passages) if self.teacher is not None else None
        return _Prepared(batch, student, teacher)

    # -- losses ----------------------------------------------------------------------------------
    def _teacher_forward(self, inputs, layers, output_attentions: bool = False):
        if self.config.trains_teacher:
            return self.teacher_ddp(
                inputs, layers=layers, gather=self.gather, output_attentions=output_attentions
            )
        with torch.no_grad():
            return self.teacher(
                inputs, layers=layers, gather=self.gather, output_attentions=output_attentions
            )

    def _loss_none(self, prepared: _Prepared) -> tuple[Tensor, dict[str, Tensor], int]:
        scores = self.student_ddp(prepared.student, gather=self.gather).scores  # [Q, P]
        q, g = len(prepared.batch.queries), prepared.batch.group_size
        positives = positive_mask(q, g, scores.shape[-1], self.ctx.rank, scores.device)
        loss = contrastive_loss(scores.float(), positives)
        return loss.total, {"loss/total": loss.total, "loss/hard": loss.hard}, scores.shape[-1]

    def _align(self, teacher: Tensor, student: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
        """Score tensors [L, Q, P] over the same passages: a CE side restricts the other to own groups."""
        if teacher.shape[-1] == student.shape[-1]:
            return teacher, student
        if teacher.shape[-1] == group_size:
            return teacher, own_group(student, group_size, self.ctx.rank)
        return own_group(teacher, group_size, self.ctx.rank), student

    def _reselect_due(self) -> bool:
        config = self.config
        if self.selection is None:
            return True
        if config.selection in ("last", "skip"):
            return False
        return self.step % config.reselect_every == 0

    def _loss_lead(self, prepared: _Prepared, first_micro: bool) -> tuple[Tensor, dict[str, Tensor], int]:
        config = self.config
        n, m = self.teacher.num_layers, self.student.num_layers
        reselect = first_micro and self._reselect_due()
        weighted = reselect and config.selection == "weighted"
        if reselect and not weighted:
            self.selection = select_layers(config.selection, n, m, config.k, self.selection_rng)
        g = prepared.batch.group_size
        q = len(prepared.batch.queries)
        # Weighted selection needs Eq. 7's weights over all teacher layers: at a re-draw the
        # teacher scores every layer once, and the new selection is used from this step on.
        teacher_layers = list(range(n)) if weighted else _needed(self.selection[0], n)
        teacher_out = self._teacher_forward(prepared.teacher, teacher_layers)
        teacher_scores = _full_layers(teacher_out.layer_scores, teacher_layers, n)
        if weighted:
            positives_t = positive_mask(q, g, teacher_scores.shape[-1], self.ctx.rank, teacher_scores.device)
            weights = teacher_layer_weights(teacher_scores.detach().float(), positives_t, config.tau_l)
            weights = distributed.all_reduce_mean(weights)
            self.selection = select_layers("weighted", n, m, config.k, self.selection_rng, weights=weights)
        student_layers = _needed(self.selection[1], m)
        student_out = self.student_ddp(prepared.student, layers=student_layers, gather=self.gather)
        student_scores = _full_layers(student_out.layer_scores, student_layers, m)
        teacher_scores, student_scores = self._align(teacher_scores, student_scores, g)
        positives = positive_mask(q, g, student_scores.shape[-1], self.ctx.rank, student_scores.device)
        loss = lead_loss(
            teacher_scores.float(),
            student_scores.float(),
            positives,
            self.selection[0],
            self.selection[1],
            tau_d=config.tau_d,
            tau_l=config.tau_l,
            reweight=config.reweight,
            joint=config.joint,
            mean_over_ranks=distributed.all_reduce_mean,  # Eq. 7 over the world batch (identity alone)
        )
        terms = {
            "loss/total": loss.total,
            "loss/layer": loss.layer,
            "loss/response": loss.response,
            "loss/teacher_hard": loss.teacher_hard,
            "loss/student_hard": loss.student_hard,
        }
        terms.update({f"layer_weight/k{i}": w for i, w in enumerate(loss.layer_weights)})
        return loss.total, terms, student_scores.shape[-1]

    def _loss_rd(self, prepared: _Prepared) -> tuple[Tensor, dict[str, Tensor], int]:
        g, q = prepared.batch.group_size, len(prepared.batch.queries)
        teacher = self._teacher_forward(prepared.teacher, None).layer_scores
        student = self.student_ddp(prepared.student, gather=self.gather).layer_scores
        teacher, student = self._align(teacher, student, g)
        positives = positive_mask(q, g, student.shape[-1], self.ctx.rank, student.device)
        loss = response_distillation_loss(
            teacher[-1].float(), student[-1].float(), positives, tau=self.config.tau_d
        )
        terms = {
            "loss/total": loss.total,
            "loss/response": loss.response,
            "loss/student_hard": loss.student_hard,
        }
        return loss.total, terms, student.shape[-1]

    def _loss_fd(self, prepared: _Prepared) -> tuple[Tensor, dict[str, Tensor], int]:
        """FD: the final layers' attention maps (as the released code distils), + L_stu."""
        g, q = prepared.batch.group_size, len(prepared.batch.queries)
        n, m = self.teacher.num_layers, self.student.num_layers
        teacher = self._teacher_forward(prepared.teacher, [n - 1], output_attentions=True)
        student = self.student_ddp(
            prepared.student, layers=[m - 1], gather=self.gather, output_attentions=True
        )
        scores = student.scores
        positives = positive_mask(q, g, scores.shape[-1], self.ctx.rank, scores.device)
        masks = {
            kind: prepared.student[f"{kind}_attention_mask"].to(scores.device)
            for kind in ("query", "passage", "pair")
            if f"{kind}_attention_mask" in prepared.student
        }
        # Same tokenizer, different padding (a ColBERT teacher's [MASK]-augmented queries vs the
        # student's batch padding): compare the maps over the token prefix both models see.
        shared = {}
        for kind in masks:
            ids, mask = f"{kind}_input_ids", f"{kind}_attention_mask"
            if all(key in prepared.teacher for key in (ids, mask)) and ids in prepared.student:
                shared[kind] = shared_token_prefix(
                    prepared.teacher[ids],
                    prepared.teacher[mask],
                    prepared.student[ids],
                    prepared.student[mask],
                ).to(scores.device)
        loss = feature_distillation_loss(
            teacher.attentions,
            student.attentions,
            [0],
            scores.float(),
            positives,
            token_masks=masks,
            shared_tokens=shared,
        )
        terms = {
            "loss/total": loss.total,
            "loss/feature": loss.feature,
            "loss/student_hard": loss.student_hard,
        }
        return loss.total, terms, scores.shape[-1]

    def _loss(self, prepared: _Prepared, first_micro: bool):
        method = self.config.method
        with self._autocast():
            if method == "none":
                return self._loss_none(prepared)
            if method == "lead":
                return self._loss_lead(prepared, first_micro)
            if method == "rd":
                return self._loss_rd(prepared)
            return self._loss_fd(prepared)

    # -- checkpoints -----------------------------------------------------------------------------
    def _checkpoint_models(self) -> dict[str, EncoderModel]:
        models = {"student": self.student}
        if self.config.trains_teacher:
            models["teacher"] = self.teacher
        return models

    def save_checkpoint(self) -> None:
        rng_states = distributed.gather_objects(ckpt.rng_state())
        if self.ctx.is_main:
            fields = trajectory_fields(self.config)
            micro = self.step * self.config.grad_accum
            epoch, index = self.plan.position(micro)
            state = {
                "step": self.step,
                "micro_batch": micro,
                "data_position": {"epoch": epoch, "batch_index": index},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_states,
                "selection_rng": self.selection_rng.bit_generator.state,
                "selection": self.selection,
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
        ckpt.check_compatible(latest, state, trajectory_fields(config), self.ctx.world_size)
        for name, model in self._checkpoint_models().items():
            saved = load_model(latest / name)
            model.load_state_dict(saved.state_dict(), strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.selection_rng.bit_generator.state = state["selection_rng"]
        self.selection = state["selection"]
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
    def train(self, tracker: SafeTracker) -> dict[str, Any]:
        config, ctx = self.config, self.ctx
        self.maybe_resume()
        accum = config.grad_accum
        prefetch = Prefetcher(self._prepare, self.step * accum, self.total_steps * accum, config.num_workers)
        queries_per_step = config.batch_size * ctx.world_size * accum
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=f"train {config.method}",
            disable=not (config.progress and ctx.is_main),
            dynamic_ncols=True,
        )
        history = _History()
        window: list[dict[str, float]] = []
        started, start_step = time.perf_counter(), self.step
        try:
            while self.step < self.total_steps:
                tick = time.perf_counter()
                sums: dict[str, float] = {}
                for micro in range(accum):
                    prepared = prefetch.get()
                    sync = micro == accum - 1 or not ctx.enabled
                    context = contextlib.nullcontext() if sync else self._no_sync()
                    with context:
                        loss, terms, num_passages = self._loss(prepared, first_micro=micro == 0)
                        (loss / accum).backward()
                    values = torch.stack([t.detach().float() for t in terms.values()]).tolist()
                    for name, value in zip(terms, values):
                        sums[name] = sums.get(name, 0.0) + value / accum
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.trainable, config.max_grad_norm)
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1

                elapsed = time.perf_counter() - tick
                metrics = dict(sums)
                if self.selection is not None:
                    metrics.update(
                        {f"layers/teacher_k{i}": float(a) for i, a in enumerate(self.selection[0])}
                    )
                    metrics.update(
                        {f"layers/student_k{i}": float(b) for i, b in enumerate(self.selection[1])}
                    )
                metrics["lr"] = lr
                metrics["queries_per_s"] = queries_per_step / max(elapsed, 1e-9)
                history.first = history.first or dict(metrics)
                history.last = metrics
                history.totals.append(metrics["loss/total"])
                window.append(metrics)
                if self.step % config.log_every == 0 or self.step == self.total_steps:
                    tracker.log_metrics(_mean(window), step=self.step)
                    window = []
                bar.set_postfix(loss=f"{metrics['loss/total']:.4f}", qps=f"{metrics['queries_per_s']:.1f}")
                bar.update(1)

                info = StepInfo(
                    step=self.step,
                    total_steps=self.total_steps,
                    metrics=metrics,
                    lr=lr,
                    epoch=prepared.batch.epoch,
                    batch_index=prepared.batch.index,
                    num_passages=num_passages,
                    rank=ctx.rank,
                    world_size=ctx.world_size,
                    selection=self.selection,
                )
                if self.outputs.step_log is not None:
                    self.outputs.step_log(info)  # before the checkpoint, which keeps a copy
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self.save_checkpoint()
                    if config.log_checkpoints and self.last_checkpoint is not None:
                        checkpoint = self.last_checkpoint
                        tracker.log_artifacts(checkpoint, f"checkpoints/{checkpoint.name}")
                for callback in self.callbacks:
                    callback(info)
        finally:
            prefetch.close()
            bar.close()
        seconds = time.perf_counter() - started
        steps_run = self.step - start_step
        return self._finish(tracker, history, steps_run, seconds, queries_per_step)

    def _no_sync(self):
        stack = contextlib.ExitStack()
        for model in (self.student_ddp, self.teacher_ddp):
            if isinstance(model, DistributedDataParallel):
                stack.enter_context(model.no_sync())
        return stack

    def _finish(self, tracker, history: _History, steps_run: int, seconds: float, queries_per_step: int):
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
                "queries_per_s": steps_run * queries_per_step / seconds if seconds > 0 else 0.0,
                "loss_last_mean": float(np.mean(tail)) if tail else float("nan"),
                "out": str(config.out),
                "out_teacher": config.out_teacher,
                "world_size": self.ctx.world_size,
            }
        )
        return summary


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for row in rows for k in row}
    return {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}


def run(config: Config, callbacks: Sequence[StepCallback] = ()) -> dict[str, Any]:
    """Train as `config` says; save the student to `config.out`. Returns final losses and throughput.

    `callbacks` are called after every optimizer step with a StepInfo (tests use them to stop a
    run or to record losses). Under torchrun every process calls run(); rank 0 writes outputs.
    """
    config.validate()
    ctx = distributed.setup()
    try:
        if not ctx.is_main:
            return Trainer(config, ctx, callbacks).train(SafeTracker(None))
        # Every output is checked before the models load; all are committed together at the end.
        outputs = atomic_outputs(config.out, config.out_teacher, config.step_log)
        if config.checkpoint_every:
            check_writable(Path(config.checkpoint_path) / "step-00000000")
        with stage_run("train", to_dict(config)) as stage_tracker:
            tracker = SafeTracker(stage_tracker)  # one for the run: after a failure, tracking stays off
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
