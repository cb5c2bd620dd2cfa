"""Backbone plumbing shared by every architecture: loading, the block list, selected-layer capture.

Only the transformer blocks whose outputs are asked for are captured (forward hooks on the
encoder's block list), so a forward that needs 3 of 12 layers never holds all 12 layers' token
states the way `output_hidden_states=True` does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from torch import Tensor, nn

from lead_core.errors import UserError

logger = logging.getLogger(__name__)

# Where common encoder families keep their list of transformer blocks.
_BLOCK_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "layer")


class BackboneError(UserError, ValueError):
    """A backbone that cannot be loaded or used (missing folder or weights, unknown layout)."""


def encoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The encoder's list of transformer blocks (BERT/MPNet: encoder.layer, DistilBERT: transformer.layer)."""
    for dotted in _BLOCK_PATHS:
        module = model
        for name in dotted.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise BackboneError(
        f"{type(model).__name__}: cannot find the transformer block list (looked for "
        f"{', '.join(_BLOCK_PATHS)}); per-layer scores need one"
    )


def load_backbone(name_or_path: str, pretrained: bool = True) -> nn.Module:
    """AutoModel from a hub id or local folder, with SDPA attention where the family has it.

    `pretrained=False` builds the architecture from the folder's config.json only (random init),
    for `load_model`, which then loads the weights strictly itself.
    """
    folder = Path(name_or_path)
    if folder.exists():
        if not folder.is_dir():
            raise BackboneError(f"{folder}: backbone must be a model folder, not a file")
        if not (folder / "config.json").is_file():
            raise BackboneError(f"{folder}: not a Hugging Face model folder (no config.json)")
        weights = list(folder.glob("*.safetensors")) + list(folder.glob("pytorch_model*.bin"))
        if pretrained and not weights:
            raise BackboneError(f"{folder}: no model weights (*.safetensors or pytorch_model.bin)")
    try:
        return _instantiate(name_or_path, "sdpa", pretrained)
    except ValueError as error:  # a family without SDPA support (MPNet): eager instead
        if "attention implementation" not in str(error):
            raise
    return _instantiate(name_or_path, "eager", pretrained)


def _instantiate(name_or_path: str, attn_implementation: str, pretrained: bool) -> nn.Module:
    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path)
    except OSError as error:
        raise BackboneError(
            f"{name_or_path}: not a local model folder, and not loadable as a hub id ({error})"
        ) from None
    model_cls = transformers.AutoModel._model_mapping[type(config)]
    kwargs = {"attn_implementation": attn_implementation}
    if "add_pooling_layer" in inspect.signature(model_cls.__init__).parameters:
        kwargs["add_pooling_layer"] = False  # the pooler is unused: scores come from block outputs
    if not pretrained:
        return model_cls._from_config(config, **kwargs)
    with _quiet_transformers():
        try:
            model, info = model_cls.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
        except OSError as error:
            raise BackboneError(f"{name_or_path}: cannot load the backbone ({error})") from None
    # A backbone with random-initialised blocks would train and score silently wrong: refuse it.
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise BackboneError(
            f"{name_or_path}: the checkpoint does not fit {model_cls.__name__}: missing weights "
            f"{missing[:8] or 'none'}, wrong shapes {mismatched[:8] or 'none'}"
        )
    # Heads of other tasks (pooler, MLM/NSP heads) are expected extras; anything else is worth a line.
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if k.split(".")[0] not in _IGNORED_HEADS)
    if unexpected:
        logger.warning(
            "%s: ignoring weights not used by %s: %s", name_or_path, model_cls.__name__, unexpected[:8]
        )
    return model


_IGNORED_HEADS = {"pooler", "cls", "lm_head", "vocab_transform", "vocab_layer_norm", "vocab_projector"}


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar (we report what matters ourselves)."""
    hf_logging = transformers.utils.logging
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(name_or_path: str):
    return transformers.AutoTokenizer.from_pretrained(name_or_path)


@contextmanager
def capture_blocks(model: nn.Module, indices: Sequence[int]) -> Iterator[dict[int, Tensor]]:
    """Record the hidden-state output of the blocks at `indices` (0-based) during a forward.

    Yields a dict block index -> [B, L, H] that fills while the backbone runs; hooks are removed
    on exit. Nothing else is kept: unselected blocks' outputs are freed as usual (or held by
    autograd only as far as backward needs them).
    """
    blocks = encoder_blocks(model)
    captured: dict[int, Tensor] = {}

    def hook_for(index: int):
        def hook(_module, _inputs, output):
            captured[index] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [blocks[i].register_forward_hook(hook_for(i)) for i in sorted(set(indices))]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eager_attention(model: nn.Module, needed: bool) -> Iterator[None]:
    """Switch the backbone to eager attention while attention maps are needed (SDPA returns none)."""
    current = getattr(model.config, "_attn_implementation", None)
    if not needed or current in (None, "eager"):
        yield
        return
    if not hasattr(model, "set_attn_implementation"):
        raise BackboneError(
            f"{type(model).__name__}: attention maps need eager attention, and this transformers "
            "version cannot switch a loaded model; load the backbone with eager attention"
        )
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(current)


def run_blocks(
    model: nn.Module,
    inputs: dict[str, Tensor],
    block_indices: Sequence[int],
    output_attentions: bool = False,
) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Run the backbone; return ({block: [B, L, H]}, {block: [B, heads, L, L]} when asked).

    Hidden states come from hooks on the selected blocks only. Attention maps (FD baseline only)
    come from the backbone's own `output_attentions`, which yields every block's map; only the
    selected ones are kept.
    """
    with eager_attention(model, output_attentions), capture_blocks(model, block_indices) as captured:
        outputs = model(**inputs, output_attentions=output_attentions, return_dict=True)
    hidden = {i: captured[i] for i in block_indices}
    attentions: dict[int, Tensor] = {}
    if output_attentions:
        maps = getattr(outputs, "attentions", None)
        if maps is None or any(maps[i] is None for i in block_indices):
            raise BackboneError(f"{type(model).__name__} returned no attention maps")
        attentions = {i: maps[i] for i in block_indices}
    return hidden, attentions


def model_inputs(model: nn.Module, batch: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors named `<prefix>_input_ids`, `<prefix>_attention_mask`, ... as backbone kwargs."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {n: batch[f"{prefix}_{n}"] for n in names if f"{prefix}_{n}" in batch}
    if "token_type_ids" in inputs and "token_type_ids" not in _forward_args(model):
        del inputs["token_type_ids"]
    return inputs


def _forward_args(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
