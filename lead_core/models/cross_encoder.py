"""Cross-encoder (CE): one shared linear head on every layer's [CLS] of the pair (paper Eq. 3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lead_core.models.base import GatherFn, LayerScores, ModelConfig
from lead_core.models.dual_encoder import _check_pairs
from lead_core.models.encoder_model import EncoderModel


class CrossEncoder(EncoderModel):
    """s_i(q, p) = w · E^i([CLS] q [SEP] p [SEP])_[CLS] with one head w (H -> 1) for all layers.

    Each query is scored against its own group only: scores are [len(layers), Q, G].
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module, tokenizer) -> None:
        if config.appended_linear:
            raise ValueError(
                "appended_linear is for dual encoders and ColBERT (§3.5.1); a cross-encoder's "
                "layers end in its scoring head"
            )
        super().__init__(config, backbone, tokenizer)
        self.head = nn.Linear(self.hidden_size, 1)

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> dict[str, Tensor]:
        """-> pair_* [Q*G, L] tensors of (query, passage) pairs and group_size (a 0-d tensor)."""
        if not queries or len(passages) % len(queries):
            raise ValueError(f"{len(passages)} passages for {len(queries)} queries: expected Q*G passages")
        group = len(passages) // len(queries)
        paired_queries = [q for q in queries for _ in range(group)]
        tokens = self.tokenizer(
            paired_queries,
            list(passages),
            padding="longest",
            truncation="longest_first",
            max_length=self.config.query_max_length + self.config.passage_max_length,
            return_tensors="pt",
        )
        batch = {f"pair_{k}": v for k, v in tokens.items()}
        batch["group_size"] = torch.tensor(group)
        return batch

    def forward(
        self,
        batch: dict[str, Tensor],
        layers: Sequence[int] | None = None,
        gather: GatherFn | None = None,
        output_attentions: bool = False,
    ) -> LayerScores:
        """[len(layers), Q, G] scores of each query's own group. `gather` is not used: a
        cross-encoder has no cross-batch negatives (each pair is encoded jointly)."""
        layers = self.resolve_layers(layers)
        group = int(batch["group_size"])
        cls, maps = self._encode_layers(
            batch, "pair", layers, output_attentions, reduce=lambda states, _mask: states[:, 0]
        )
        scores = torch.stack([self.head(c).squeeze(-1).view(-1, group) for c in cls])
        return LayerScores(layer_scores=scores, layers=layers, attentions=maps if output_attentions else None)

    @torch.no_grad()
    def score_pairs(
        self, queries: Sequence[str], passages: Sequence[str], batch_size: int | None = None
    ) -> Tensor:
        """[n] final-layer score of each (queries[i], passages[i]) – for reranking."""
        _check_pairs(queries, passages)
        queries, passages = list(queries), list(passages)
        step = batch_size or max(len(queries), 1)
        scores = [
            self.forward(self.prepare(queries[s : s + step], passages[s : s + step])).scores[:, 0]
            for s in range(0, len(queries), step)
        ]
        if not scores:
            return torch.empty(0, device=self.device)
        return torch.cat(scores)
