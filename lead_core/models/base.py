"""The unified view of retrieval models (paper §3.2): the interface every model implements.

A model of N layers scores a batch of Q queries against passages and returns, for the layers asked
for, score matrices of shape [len(layers), Q, P] (Eq. 1–3 applied to each layer's output). Layer
indices are 0-based: index i is the output of transformer block i+1 (embeddings excluded); appended
linear layers (§3.5.1) come after the transformer blocks; index num_layers-1 is the final layer.

Batch layout (what `prepare` takes and the trainer builds): `queries` has Q texts; `passages`
has Q*G texts in groups of G, `passages[i*G:(i+1)*G]` being query i's group (its positive(s)
first, then its negatives).
  - Dual encoder (de) and ColBERT (cb) score every query against every passage of the batch
    (cross-batch negatives): P = Q*G, or the world's Q*G*world_size passages when `gather`
    is given.
  - Cross-encoder (ce) scores each query against its own group only: P = G.

Implementations (lead_core.models): DualEncoder, ColBERT, CrossEncoder; `build_model(config)` from
a backbone, `load_model(path)` from a directory written by `save`. `prepare` returns tensors named
`query_*` / `passage_*` (DE, CB) or `pair_*` plus a 0-d `group_size` (CE).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

Architecture = Literal["de", "cb", "ce"]
# Gathers a tensor from every rank along dim 0, the local part keeping its gradient.
GatherFn = Callable[[Tensor], Tensor]


@dataclass
class ModelConfig:
    """The project's own model config, saved as `lead_model.json` beside the HF weights."""

    architecture: Architecture
    backbone: str  # hub id or local folder of a Hugging Face encoder
    pooling: Literal["cls", "mean"] = "cls"  # DE pooling of each layer's token states
    query_max_length: int = 32
    passage_max_length: int = 160
    # ColBERT query augmentation: pad queries with [MASK] to query_max_length (attended).
    query_augmentation: bool = True
    # Dimensions of linear layers appended after the encoder, counted as layers (§3.5.1).
    appended_linear: list[int] = field(default_factory=list)


@dataclass
class LayerScores:
    """Scores of the layers asked for.

    layer_scores: [len(layers), Q, P] float tensor, in the order of `layers`.
    layers: 0-based layer indices (sorted ascending, last one = num_layers - 1 when asked).
    attentions: only when asked (FD baseline): per selected layer, a dict of attention maps
        {"query": [Q, heads, Lq, Lq], "passage": [P_local, heads, Lp, Lp]} (DE/CB) or
        {"pair": [Q*G, heads, L, L]} (CE). Appended linear layers have no attention map: {}.
    """

    layer_scores: Tensor
    layers: list[int]
    attentions: list[dict[str, Tensor]] | None = None

    @property
    def scores(self) -> Tensor:
        """[Q, P] scores of the last layer asked for (the final layer when it was asked)."""
        return self.layer_scores[-1]


class RetrievalModel(nn.Module, abc.ABC):
    """DE, CB or CE over a Hugging Face encoder backbone, with its own tokenizer."""

    config: ModelConfig

    @property
    @abc.abstractmethod
    def num_layers(self) -> int:
        """Transformer blocks + appended linear layers."""

    @property
    @abc.abstractmethod
    def tokenizer(self):
        """The backbone's tokenizer (teacher and student need not share one)."""

    @abc.abstractmethod
    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize a batch (layout in the module docstring) into tensors for `forward`."""

    @abc.abstractmethod
    def forward(
        self,
        batch: dict[str, Tensor],
        layers: Sequence[int] | None = None,
        gather: GatherFn | None = None,
        output_attentions: bool = False,
    ) -> LayerScores:
        """Per-layer scores [len(layers), Q, P]; `layers=None` means the final layer only.

        Only the layers asked for are pooled and scored (the final layer always when it is asked).
        `gather` (DE/CB under DDP) all-gathers passage representations so that every query is
        scored against the world's passages, padding masks gathered with them.
        """

    @abc.abstractmethod
    def score_pairs(
        self, queries: Sequence[str], passages: Sequence[str], batch_size: int | None = None
    ) -> Tensor:
        """[n] final-layer score of each (queries[i], passages[i]) pair – for reranking (CB, CE; DE too).

        No gradient; `batch_size` pairs per forward (None: all at once)."""

    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int | None = None) -> Tensor:
        """[n, H] final-layer embeddings (dual encoder only); used by the encode stage.

        No gradient; `batch_size` texts per forward (None: all at once). H is the output size
        (the last appended linear layer's, when there are any)."""
        raise NotImplementedError(f"{type(self).__name__} does not produce single-vector embeddings")

    @abc.abstractmethod
    def save(self, path) -> None:
        """Write `lead_model.json`, the weights (safetensors) and the tokenizer to a directory."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
