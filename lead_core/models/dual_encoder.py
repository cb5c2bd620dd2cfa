"""Dual encoder (DE): per-layer pooled query·passage dot products (paper Eq. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lead_core.models.base import GatherFn, LayerScores
from lead_core.models.encoder_model import EncoderModel, gather_together, merge_attentions


def pool(states: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """[B, L, H] token states -> [B, H]: the first ([CLS]) token, or the mean over real tokens."""
    if pooling == "cls":
        return states[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {pooling!r} (expected 'cls' or 'mean')")


class DualEncoder(EncoderModel):
    """s_i(q, p) = E^i(q) · E^i(p) with E^i the pooled output of layer i (Eq. 1).

    Raw vectors at every layer: no normalisation and no projection at intermediate layers
    (as the paper's code computes them); appended linear layers act on the pooled vector.
    """

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> dict[str, Tensor]:
        """-> query_* [Q, Lq] and passage_* [Q*G, Lp] tensors (input_ids, attention_mask, ...)."""
        if not queries or len(passages) % len(queries):
            raise ValueError(f"{len(passages)} passages for {len(queries)} queries: expected Q*G passages")
        batch = {}
        for prefix, texts, max_length in (
            ("query", queries, self.config.query_max_length),
            ("passage", passages, self.config.passage_max_length),
        ):
            for key, value in self._tokenize(texts, max_length).items():
                batch[f"{prefix}_{key}"] = value
        return batch

    def _pooled(self, batch, prefix, layers, output_attentions):
        return self._encode_layers(
            batch,
            prefix,
            layers,
            output_attentions,
            reduce=lambda states, mask: pool(states, mask, self.config.pooling),
        )

    def forward(
        self,
        batch: dict[str, Tensor],
        layers: Sequence[int] | None = None,
        gather: GatherFn | None = None,
        output_attentions: bool = False,
    ) -> LayerScores:
        """[len(layers), Q, P] dot products; P = Q*G, or the world's passages with `gather`."""
        layers = self.resolve_layers(layers)
        queries, query_maps = self._pooled(batch, "query", layers, output_attentions)
        passages, passage_maps = self._pooled(batch, "passage", layers, output_attentions)
        if gather is not None:
            passages = gather_together(passages, gather)
        scores = torch.stack([q @ p.T for q, p in zip(queries, passages)])
        attentions = merge_attentions(query_maps, passage_maps) if output_attentions else None
        return LayerScores(layer_scores=scores, layers=layers, attentions=attentions)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int | None = None) -> Tensor:
        """[n, output_size] final-layer pooled embeddings (after appended linear layers)."""
        texts = list(texts)
        max_length = self.config.query_max_length if is_query else self.config.passage_max_length
        step = batch_size or max(len(texts), 1)
        final = [self.num_layers - 1]
        chunks = []
        for start in range(0, len(texts), step):
            tokens = self._tokenize(texts[start : start + step], max_length)
            batch = {f"text_{k}": v for k, v in tokens.items()}
            chunks.append(self._pooled(batch, "text", final, False)[0][0])
        if not chunks:
            return torch.empty(0, self.output_size, device=self.device)
        return torch.cat(chunks)

    @torch.no_grad()
    def score_pairs(
        self, queries: Sequence[str], passages: Sequence[str], batch_size: int | None = None
    ) -> Tensor:
        """[n] final-layer dot product of each (queries[i], passages[i])."""
        _check_pairs(queries, passages)
        q = self.encode(queries, is_query=True, batch_size=batch_size)
        p = self.encode(passages, is_query=False, batch_size=batch_size)
        return (q * p).sum(-1)


def _check_pairs(queries: Sequence[str], passages: Sequence[str]) -> None:
    if len(queries) != len(passages):
        raise ValueError(f"score_pairs needs as many passages as queries ({len(queries)} != {len(passages)})")
