"""build_model (from a backbone) and load_model (a directory written by `model.save`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from lead_core.errors import UserError
from lead_core.models.base import ModelConfig
from lead_core.models.colbert import ColBERT
from lead_core.models.cross_encoder import CrossEncoder
from lead_core.models.dual_encoder import DualEncoder
from lead_core.models.encoder import BackboneError, load_backbone, load_tokenizer
from lead_core.models.encoder_model import (
    BACKBONE_WEIGHTS,
    CONFIG_FILE,
    EXTRA_WEIGHTS,
    FORMAT_VERSION,
    EncoderModel,
)

ARCHITECTURES: dict[str, type[EncoderModel]] = {"de": DualEncoder, "cb": ColBERT, "ce": CrossEncoder}


class ModelLoadError(UserError, ValueError):
    """A saved model directory that is missing, incomplete or does not match its config."""


def _model_class(config: ModelConfig) -> type[EncoderModel]:
    try:
        return ARCHITECTURES[config.architecture]
    except KeyError:
        raise ModelLoadError(
            f"unknown architecture {config.architecture!r} (expected one of {sorted(ARCHITECTURES)})"
        ) from None


def build_model(config: ModelConfig) -> EncoderModel:
    """A DE/CB/CE over the pretrained backbone `config.backbone` (hub id or local HF folder).

    New parameters (appended linear layers, the CE head) are initialised from torch's global RNG:
    seed it first for reproducibility. The model is returned in eval mode.
    """
    model_cls = _model_class(config)
    backbone = load_backbone(config.backbone)
    model = model_cls(config, backbone, load_tokenizer(config.backbone))
    return model.eval()


def read_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig stored in a saved model directory's lead_model.json."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a model directory (it does not exist or is a file)")
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise ModelLoadError(f"{path}: no {CONFIG_FILE}; not a directory written by model.save")
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{config_file}: invalid JSON ({error})") from None
    meta.pop("lead_core_version", None)
    version = meta.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise ModelLoadError(f"{config_file}: format_version {version!r}, expected {FORMAT_VERSION}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(meta) - known)
    if unknown:
        raise ModelLoadError(f"{config_file}: unknown fields {unknown}")
    try:
        return ModelConfig(**meta)
    except TypeError as error:
        raise ModelLoadError(f"{config_file}: {error}") from None


def load_model(path: str | Path) -> EncoderModel:
    """Load a model directory written by `model.save`: exactly the saved weights, or an error.

    Every parameter and buffer must be in the files and every tensor in the files must belong to
    the model (no strict=False): missing or unexpected keys raise ModelLoadError naming them.
    """
    path = Path(path)
    config = read_model_config(path)
    weights = path / BACKBONE_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(f"{path}: no model weights ({BACKBONE_WEIGHTS} is missing)")
    try:
        backbone = load_backbone(str(path), pretrained=False)
    except (BackboneError, OSError) as error:
        raise ModelLoadError(f"{path}: cannot build the backbone from config.json ({error})") from None
    model = _model_class(config)(config, backbone, load_tokenizer(str(path)))

    state = {f"backbone.{k}": v for k, v in _read(weights).items()}
    extra_file = path / EXTRA_WEIGHTS
    if extra_file.is_file():
        state.update(_read(extra_file))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"{path}: weights do not match the {config.architecture} model in {CONFIG_FILE}: "
            f"missing {_preview(missing)}, unexpected {_preview(unexpected)}"
        )
    wrong_shape = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong_shape:
        details = ", ".join(
            f"{_file_key(k)} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in wrong_shape[:5]
        )
        raise ModelLoadError(f"{path}: weights of the wrong shape: {details}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _read(file: Path):
    try:
        return load_file(file)
    except (SafetensorError, OSError) as error:
        raise ModelLoadError(f"{file}: unreadable safetensors file ({error})") from None


def _file_key(key: str) -> str:
    """backbone.x -> model.safetensors:x, other keys -> lead_head.safetensors:key."""
    if key.startswith("backbone."):
        return f"{BACKBONE_WEIGHTS}:{key.removeprefix('backbone.')}"
    return f"{EXTRA_WEIGHTS}:{key}"


def _preview(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    shown = ", ".join(_file_key(k) for k in keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"
