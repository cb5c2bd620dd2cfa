"""Inference plumbing shared by encode, search and rerank: device, precision, model loading."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import torch

from lead_core import distributed
from lead_core.config import ConfigError
from lead_core.data.schema import SchemaError
from lead_core.models import load_model
from lead_core.models.base import RetrievalModel


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto": this process's GPU (cuda:LOCAL_RANK under torchrun) when CUDA is available, else CPU."""
    if name == "auto":
        return distributed.local_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


Precision = Literal["auto", "fp32", "bf16"]


def inference_precision(
    device: torch.device, precision: Precision = "auto"
) -> contextlib.AbstractContextManager:
    """bf16 autocast ("auto": on GPU only – the encoder's matmuls in bf16), or plain fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_for_inference(
    path: str | Path, device: torch.device, architectures: Sequence[str] = ("de", "cb", "ce"), stage: str = ""
) -> RetrievalModel:
    """`load_model(path)` in eval mode on `device`, refusing architectures the stage cannot use."""
    model = load_model(path)
    if model.config.architecture not in architectures:
        names = {"de": "dual encoder", "cb": "ColBERT", "ce": "cross-encoder"}
        wanted = " or ".join(f"{names[a]} ({a})" for a in architectures)
        hint = " – score it with `lead rerank` instead" if stage in ("encode", "search") else ""
        raise SchemaError(
            f"{path}: {stage or 'this stage'} needs a {wanted} model, found a "
            f"{names.get(model.config.architecture, model.config.architecture)} "
            f"({model.config.architecture}){hint}"
        )
    return model.to(device).eval()


@contextlib.contextmanager
def max_length_override(model: RetrievalModel, is_query: bool, max_length: int | None) -> Iterator[None]:
    """Temporarily replace the model's query or passage token limit (None: keep the model's)."""
    if max_length is None:
        yield
        return
    if max_length < 1:
        raise ConfigError(f"max_length must be positive, got {max_length}")
    name = "query_max_length" if is_query else "passage_max_length"
    saved = getattr(model.config, name)
    setattr(model.config, name, max_length)
    try:
        yield
    finally:
        setattr(model.config, name, saved)
