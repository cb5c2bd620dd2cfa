"""What DE, CB and CE share: backbone + tokenizer, appended linear layers, layer bookkeeping, save.

Layer index i < num_blocks is the output of transformer block i+1; index num_blocks + j is the
output of appended linear layer j (§3.5.1). Subclasses implement tokenisation (`prepare`) and the
per-layer similarity (Eq. 1–3).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

import lead_core
from lead_core.artifacts import atomic_path
from lead_core.models.base import GatherFn, ModelConfig, RetrievalModel
from lead_core.models.encoder import encoder_blocks, model_inputs, run_blocks, to_device

CONFIG_FILE = "lead_model.json"
BACKBONE_WEIGHTS = "model.safetensors"
EXTRA_WEIGHTS = "lead_head.safetensors"  # appended linear layers and the CE head
FORMAT_VERSION = 1


class EncoderModel(RetrievalModel):
    """A retrieval model over one Hugging Face encoder backbone and its own tokenizer."""

    def __init__(self, config: ModelConfig, backbone: nn.Module, tokenizer) -> None:
        super().__init__()
        _validate(config)
        self.config = config
        self.backbone = backbone
        self._tokenizer = tokenizer
        self.num_blocks = len(encoder_blocks(backbone))
        self.hidden_size = int(backbone.config.hidden_size)
        dims = [self.hidden_size, *config.appended_linear]
        self.appended = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.output_size = dims[-1]

    # -- RetrievalModel -------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return self.num_blocks + len(self.appended)

    @property
    def tokenizer(self):
        return self._tokenizer

    def save(self, path) -> None:
        """Write lead_model.json, the backbone (config.json + model.safetensors, loadable by
        transformers), the appended/head weights (lead_head.safetensors) and the tokenizer."""
        with atomic_path(Path(path)) as tmp:
            tmp.mkdir()
            meta = {
                "format_version": FORMAT_VERSION,
                "lead_core_version": lead_core.__version__,
                **asdict(self.config),  # `backbone` stays the original id: provenance only
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            self.backbone.config.save_pretrained(tmp)
            save_file(_cpu_tensors(self.backbone.state_dict()), tmp / BACKBONE_WEIGHTS, {"format": "pt"})
            extra = {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}
            if extra:
                save_file(_cpu_tensors(extra), tmp / EXTRA_WEIGHTS, {"format": "pt"})
            self.tokenizer.save_pretrained(tmp)

    # -- shared helpers -------------------------------------------------------------------------

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        """Validate a layer selection: strictly increasing 0-based indices < num_layers."""
        if layers is None:
            return [self.num_layers - 1]
        resolved = [int(i) for i in layers]
        if not resolved:
            raise ValueError("layers must name at least one layer (or be None for the final layer)")
        if any(b <= a for a, b in zip(resolved, resolved[1:])):
            raise ValueError(f"layers must be strictly increasing, got {resolved}")
        if resolved[0] < 0 or resolved[-1] >= self.num_layers:
            raise ValueError(
                f"layers {resolved} out of range: this model has {self.num_layers} layers "
                f"({self.num_blocks} transformer blocks + {len(self.appended)} appended linear)"
            )
        return resolved

    def _tokenize(self, texts: Sequence[str], max_length: int, **kwargs) -> dict[str, Tensor]:
        return self.tokenizer(
            list(texts),
            padding=kwargs.pop("padding", "longest"),
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            **kwargs,
        )

    def _encode_layers(
        self,
        batch: dict[str, Tensor],
        prefix: str,
        layers: list[int],
        output_attentions: bool,
        reduce=None,
    ) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
        """Representations of the `prefix` texts at each layer in `layers`.

        Block layers give [B, L, H] token states, reduced by `reduce(states, attention_mask)`
        when given (DE pooling: -> [B, H]); appended linear layers are applied to the (reduced)
        final block output. Returns (per-layer tensors, per-layer attention dicts keyed `prefix`;
        appended layers have no attention map: {}).
        """
        inputs = model_inputs(self.backbone, to_device(batch, self.device), prefix)
        blocks = sorted({min(i, self.num_blocks - 1) for i in layers})
        hidden, maps = run_blocks(self.backbone, inputs, blocks, output_attentions)
        mask = inputs["attention_mask"]
        reduced = {b: (reduce(h, mask) if reduce is not None else h) for b, h in hidden.items()}
        appended: list[Tensor] = []
        deepest = layers[-1] - self.num_blocks
        if deepest >= 0:
            x = reduced[self.num_blocks - 1]
            for linear in self.appended[: deepest + 1]:
                x = linear(x)
                appended.append(x)
        outputs, attentions = [], []
        for i in layers:
            if i < self.num_blocks:
                outputs.append(reduced[i])
                attentions.append({prefix: maps[i]} if output_attentions else {})
            else:
                outputs.append(appended[i - self.num_blocks])
                attentions.append({})
        return outputs, attentions


def gather_together(tensors: Sequence[Tensor], gather: GatherFn) -> list[Tensor]:
    """All-gather several [P, ..., d_i] tensors with one call: concatenated on the last dim.

    Masks travel in the same tensor as the vectors they belong to, so a passage's padding mask
    is never separated from its vectors (the public code applied only the local mask).
    """
    sizes = [t.shape[-1] for t in tensors]
    dtype = tensors[0].dtype
    gathered = gather(torch.cat([t.to(dtype) for t in tensors], dim=-1))
    return list(torch.split(gathered, sizes, dim=-1))


def merge_attentions(
    first: list[dict[str, Tensor]], second: list[dict[str, Tensor]]
) -> list[dict[str, Tensor]]:
    return [{**a, **b} for a, b in zip(first, second)]


def _validate(config: ModelConfig) -> None:
    if config.pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', not {config.pooling!r}")
    for name in ("query_max_length", "passage_max_length"):
        if int(getattr(config, name)) < 2:
            raise ValueError(f"{name} must be at least 2 (room for the special tokens)")
    if any(int(d) < 1 for d in config.appended_linear):
        raise ValueError(f"appended_linear dimensions must be positive, got {config.appended_linear}")


def _cpu_tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
