"""ColBERT (CB): per-layer late interaction, MaxSim over token vectors (paper Eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lead_core.models.base import GatherFn, LayerScores
from lead_core.models.dual_encoder import _check_pairs
from lead_core.models.encoder_model import EncoderModel, gather_together, merge_attentions


def maxsim(query: Tensor, query_weight: Tensor, passage: Tensor, passage_mask: Tensor) -> Tensor:
    """Eq. 2 for every query against every passage.

    query [Q, Lq, H], query_weight [Q, Lq] (1 for query tokens that count, 0 for padding),
    passage [P, Lp, H], passage_mask [P, Lp] (true/1 for real tokens) -> [Q, P]:
    sum over query tokens of the max over real passage tokens of the dot product.
    """
    sim = torch.einsum("qih,pjh->qpij", query, passage)  # [Q, P, Lq, Lp]
    padding = ~passage_mask.bool()
    sim = sim.masked_fill(padding[None, :, None, :], float("-inf"))
    best = sim.max(dim=-1).values  # [Q, P, Lq]
    return (best * query_weight[:, None, :].to(best.dtype)).sum(-1)


def pairwise_maxsim(query: Tensor, query_weight: Tensor, passage: Tensor, passage_mask: Tensor) -> Tensor:
    """Eq. 2 for aligned pairs: query [n, Lq, H] with passage [n, Lp, H] -> [n]."""
    sim = torch.einsum("nih,njh->nij", query, passage)
    sim = sim.masked_fill(~passage_mask.bool()[:, None, :], float("-inf"))
    best = sim.max(dim=-1).values  # [n, Lq]
    return (best * query_weight.to(best.dtype)).sum(-1)


class ColBERT(EncoderModel):
    """s_i(q, p) = Σ_x max_y E^i(q)_x · E^i(p)_y over token vectors of layer i (Eq. 2).

    The final layer's token vectors are L2-normalised; intermediate layers use raw token vectors
    (no 128-d projection, no punctuation mask: the paper follows [16]). Queries are padded with the
    tokenizer's mask token to query_max_length and those positions are attended and scored
    (query augmentation) unless `config.query_augmentation` is off, in which case query padding is
    masked like passage padding.
    """

    def _query_tokens(self, queries: Sequence[str]) -> dict[str, Tensor]:
        if not self.config.query_augmentation:
            return self._tokenize(queries, self.config.query_max_length)
        tokens = self._tokenize(queries, self.config.query_max_length, padding="max_length")
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError(
                f"{self.config.backbone}: the tokenizer has no mask token; query augmentation needs "
                "one (set query_augmentation to false)"
            )
        padding = tokens["attention_mask"] == 0
        tokens["input_ids"] = tokens["input_ids"].masked_fill(padding, mask_id)
        tokens["attention_mask"] = torch.ones_like(tokens["attention_mask"])
        return tokens

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> dict[str, Tensor]:
        """-> query_* [Q, query_max_length] (augmented) and passage_* [Q*G, Lp] tensors."""
        if not queries or len(passages) % len(queries):
            raise ValueError(f"{len(passages)} passages for {len(queries)} queries: expected Q*G passages")
        batch = {f"query_{k}": v for k, v in self._query_tokens(queries).items()}
        passage = self._tokenize(passages, self.config.passage_max_length)
        batch.update({f"passage_{k}": v for k, v in passage.items()})
        return batch

    def _tokens(self, batch, prefix, layers, output_attentions):
        """Per-layer token vectors ([B, L, H_i], final layer normalised) and the [B, L] mask."""
        vectors, maps = self._encode_layers(batch, prefix, layers, output_attentions)
        if layers[-1] == self.num_layers - 1:
            vectors[-1] = F.normalize(vectors[-1], p=2, dim=-1)
        mask = batch[f"{prefix}_attention_mask"].to(vectors[0].device)
        return vectors, mask, maps

    def forward(
        self,
        batch: dict[str, Tensor],
        layers: Sequence[int] | None = None,
        gather: GatherFn | None = None,
        output_attentions: bool = False,
    ) -> LayerScores:
        """[len(layers), Q, P] MaxSim scores; P = Q*G, or the world's passages with `gather`.

        With `gather`, passages are padded to passage_max_length first (every rank must send
        the same shape) and each passage's mask is gathered in the same tensor as its vectors.
        """
        layers = self.resolve_layers(layers)
        queries, query_mask, query_maps = self._tokens(batch, "query", layers, output_attentions)
        passages, passage_mask, passage_maps = self._tokens(batch, "passage", layers, output_attentions)
        # With augmentation every query position holds a token or an attended [MASK]: all count.
        query_weight = query_mask.new_ones(query_mask.shape) if self.config.query_augmentation else query_mask
        if gather is not None:
            pad = self.config.passage_max_length - passage_mask.shape[1]
            if pad < 0:
                raise ValueError(
                    f"passages of {passage_mask.shape[1]} tokens exceed passage_max_length "
                    f"{self.config.passage_max_length}; tokenize them with `prepare`"
                )
            passages = [F.pad(p, (0, 0, 0, pad)) for p in passages]
            passage_mask = F.pad(passage_mask, (0, pad))
            *passages, gathered_mask = gather_together([*passages, passage_mask.unsqueeze(-1)], gather)
            passage_mask = gathered_mask.squeeze(-1) > 0.5
        scores = torch.stack([maxsim(q, query_weight, p, passage_mask) for q, p in zip(queries, passages)])
        attentions = merge_attentions(query_maps, passage_maps) if output_attentions else None
        return LayerScores(layer_scores=scores, layers=layers, attentions=attentions)

    @torch.no_grad()
    def score_pairs(
        self, queries: Sequence[str], passages: Sequence[str], batch_size: int | None = None
    ) -> Tensor:
        """[n] final-layer MaxSim of each (queries[i], passages[i]) – for reranking."""
        _check_pairs(queries, passages)
        queries, passages = list(queries), list(passages)
        step = batch_size or max(len(queries), 1)
        final = [self.num_layers - 1]
        scores = []
        for start in range(0, len(queries), step):
            batch = self.prepare(queries[start : start + step], passages[start : start + step])
            (q,), q_mask, _ = self._tokens(batch, "query", final, False)
            (p,), p_mask, _ = self._tokens(batch, "passage", final, False)
            weight = q_mask.new_ones(q_mask.shape) if self.config.query_augmentation else q_mask
            scores.append(pairwise_maxsim(q, weight, p, p_mask))
        if not scores:
            return torch.empty(0, device=self.device)
        return torch.cat(scores)
