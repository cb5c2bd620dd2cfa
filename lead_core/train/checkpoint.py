"""Resumable checkpoints: models, optimizer, scheduler, every RNG state and the data position.

Layout of `<checkpoint_dir>/step-00001000/` (each written atomically, the latest `keep` kept):
    student/        the student as a lead model directory (RetrievalModel.save)
    teacher/        the teacher, when it is trained (joint LEAD)
    trainer.pt      step, data position, optimizer and scheduler state, the RNG states of every
                    rank (torch, numpy, python, CUDA), the layer-selection generator and current
                    selection, the world size and the trajectory config (checked on resume)
    step_log.jsonl  the run's --step-log up to this step (a resumed run continues it)

`trainer.pt` holds only tensors and plain Python values (numpy's RNG state is stored as a tensor),
so it is read with `torch.load(weights_only=True)`: a file crafted to run code when unpickled is
refused instead of executed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lead_core.artifacts import atomic_path
from lead_core.config import ConfigError

STATE_FILE = "trainer.pt"
STEP_LOG_FILE = "step_log.jsonl"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointMismatchError(ConfigError):
    """A checkpoint was written by a run with another config (or world size)."""


class UnsafeCheckpointError(ConfigError):
    """A checkpoint's state file holds objects that loading would have to execute code to build."""


def config_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """This process's RNG states: python, numpy global, torch CPU and (when present) CUDA."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),  # uint32 words; int64 tensors load safely
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in `directory` as (step, path), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(
    directory: str | Path,
    step: int,
    models: dict[str, Any],
    state: dict[str, Any],
    keep: int = 2,
    step_log: Path | None = None,
) -> Path:
    """Write `step-<step>/` atomically (models saved with .save, `state` with torch.save, a copy
    of `step_log`); prune.

    Only the latest `keep` checkpoints remain; older ones are removed after the new one is in
    place, so a crash never leaves fewer than before.
    """
    final = Path(directory) / f"step-{step:08d}"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        for name, model in models.items():
            model.save(tmp / name)
        torch.save(state, tmp / STATE_FILE)
        if step_log is not None:
            shutil.copyfile(step_log, tmp / STEP_LOG_FILE)
    for _, old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(path: str | Path) -> dict[str, Any]:
    """The state of checkpoint `path`, loaded with weights_only=True (tensors and plain values only)."""
    file = Path(path) / STATE_FILE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpointError(
            f"{file}: refused to load: it holds objects other than tensors and plain Python values, "
            f"which could run code when loaded ({first}). lead_core writes none (before it stored numpy's "
            "RNG state as a tensor, its checkpoints held numpy arrays: those cannot be resumed); remove "
            "this checkpoint and start again, or resume from one you wrote"
        ) from None


def check_compatible(path: Path, state: dict[str, Any], fields: dict[str, Any], world_size: int) -> None:
    """Raise CheckpointMismatchError naming every field that differs from the checkpoint's run."""
    saved = state.get("config", {})
    differing = sorted(
        k for k in set(saved) | set(fields) if saved.get(k, "<absent>") != fields.get(k, "<absent>")
    )
    if differing:
        details = "; ".join(
            f"{k}: {saved.get(k, '<absent>')!r} in the checkpoint, {fields.get(k, '<absent>')!r} now"
            for k in differing
        )
        raise CheckpointMismatchError(
            f"{path}: checkpoint of a run with another config ({details}); resume with the same "
            "config, or use another --checkpoint-dir"
        )
    if state.get("world_size") != world_size:
        raise CheckpointMismatchError(
            f"{path}: checkpoint written by {state.get('world_size')} process(es), resumed with "
            f"{world_size}; the data order depends on the number of processes"
        )
