"""Feature-based distillation (FD, the paper's baseline of Table 3): attention-map distillation.

As in VIRT / TinyBERT-style attention transfer: the student's attention maps of mapped layers are
pulled towards the teacher's. Attention maps are compared token by token, so teacher and student
must tokenize identically – the constraint LEAD removes. Use `check_same_tokenizer` before
training; `feature_distillation_loss` also refuses maps whose token dimensions differ.

Choice of divergence: per layer and sequence kind, heads are averaged (teacher and student may have
different head counts) and each query token's attention row – a distribution over key tokens –
is compared by KL(teacher row || student row), summed over keys, averaged over the (non-padding)
rows and the sequences of the batch. Student probabilities are clamped at 1e-12 before the log so
that a key the student's softmax underflowed to 0 gives a large, finite term.

Same tokenizer, different padding: a ColBERT teacher pads queries to query_max_length with
attended [MASK] tokens (query augmentation) while a DE student pads to the batch's longest query,
so the maps differ in size although the real tokens ([CLS] query [SEP]) sit at the same positions.
`shared_tokens` handles this: per kind a [B, L] mask of the prefix of positions holding the same
real token for both models (`shared_token_prefix`); both maps are cut to those rows and key
columns, each kept row is renormalised over the kept keys (the teacher's mass on its [MASK]
tokens, the student's on anything outside the prefix, is dropped), and the KL is taken as above.
Maps of different sizes without `shared_tokens` still raise.

Scope: maps are compared per key of the attention dicts that `RetrievalModel.forward` returns
("query" and "passage" for DE/CB, "pair" for CE), so DE→DE, CB→DE and CE→CE work. A CE teacher's
"pair" maps have no counterpart in a DE student; VIRT's virtual query–passage interaction is not
implemented, and such a pair raises a ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lead_core.losses._kl import check_positives, check_positives_visible, hard_loss, kl_divergence

_PROBE_TEXT = "Hello, World! LEAD's dense-retrieval test: naïve café – 12,345 résumés (2024)."
_STUDENT_PROB_FLOOR = 1e-12


class TokenizerMismatchError(ValueError):
    """Teacher and student tokenize differently, so their attention maps cannot be compared."""


@dataclass
class FeatureDistillationLoss:
    """total = feature + student_hard (scalar float32 tensors).

    feature: attention-map KL, averaged over the mapped layers and sequence kinds.
    student_hard: L_stu (Eq. 11).
    """

    total: Tensor
    feature: Tensor
    student_hard: Tensor


def _tokenizer_name(tokenizer) -> str:
    name = getattr(tokenizer, "name_or_path", "") or ""
    return f"{type(tokenizer).__name__}({name!r})" if name else type(tokenizer).__name__


def check_same_tokenizer(teacher_tokenizer, student_tokenizer) -> None:
    """Raise TokenizerMismatchError (a ValueError) unless both tokenize identically.

    Compares the vocabularies (token -> id), the special tokens and their ids, and the ids both
    produce for a probe text (catches normalisation differences such as lower-casing).
    """
    teacher_name, student_name = _tokenizer_name(teacher_tokenizer), _tokenizer_name(student_tokenizer)
    problems: list[str] = []
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        only_teacher = sorted(set(teacher_vocab) - set(student_vocab))
        only_student = sorted(set(student_vocab) - set(teacher_vocab))
        moved = sorted(
            t for t in set(teacher_vocab) & set(student_vocab) if teacher_vocab[t] != student_vocab[t]
        )
        problems.append(
            f"vocabularies differ (sizes {len(teacher_vocab)} vs {len(student_vocab)}; "
            f"only in teacher e.g. {only_teacher[:5]}, only in student e.g. {only_student[:5]}, "
            f"different ids e.g. {moved[:5]})"
        )

    def specials(tokenizer) -> dict[str, tuple[str, int | None]]:
        out = {}
        for attr in (
            "cls_token",
            "sep_token",
            "pad_token",
            "mask_token",
            "unk_token",
            "bos_token",
            "eos_token",
        ):
            token = getattr(tokenizer, attr, None)
            if token is not None:
                out[attr] = (str(token), tokenizer.convert_tokens_to_ids(str(token)))
        return out

    teacher_specials, student_specials = specials(teacher_tokenizer), specials(student_tokenizer)
    if teacher_specials != student_specials:
        differing = sorted(
            k
            for k in set(teacher_specials) | set(student_specials)
            if teacher_specials.get(k) != student_specials.get(k)
        )
        problems.append(
            "special tokens differ: "
            + ", ".join(f"{k} {teacher_specials.get(k)} vs {student_specials.get(k)}" for k in differing)
        )
    if not problems:
        teacher_ids = teacher_tokenizer(_PROBE_TEXT)["input_ids"]
        student_ids = student_tokenizer(_PROBE_TEXT)["input_ids"]
        if list(teacher_ids) != list(student_ids):
            problems.append(f"they tokenize {_PROBE_TEXT!r} differently: {teacher_ids} vs {student_ids}")
    if problems:
        raise TokenizerMismatchError(
            f"feature-based distillation (FD) compares attention maps token by token and needs the same "
            f"tokenizer, but teacher {teacher_name} and student {student_name} differ: "
            + "; ".join(problems)
            + ". Use LEAD or RD, which compare score distributions and work across tokenizers."
        )


def _row_weights(mask: Tensor | None, shape: torch.Size) -> Tensor:
    """[B, L] float weights of the attention rows to average over (1 = real token)."""
    if mask is None:
        return torch.ones(shape[0], shape[1])
    return mask.float()


def shared_token_prefix(
    teacher_ids: Tensor, teacher_mask: Tensor, student_ids: Tensor, student_mask: Tensor
) -> Tensor:
    """[B, L] bool: the leading positions where both models see the same real token.

    teacher_ids/teacher_mask: [B, L_t]; student_ids/student_mask: [B, L_s] (input ids and attention
    masks from the models' `prepare`); L = min(L_t, L_s). A position counts while both masks are
    set and the ids agree; the first disagreement (a [MASK] augmentation token against padding, a
    [SEP] of an earlier truncation) ends the prefix.
    """
    length = min(teacher_ids.shape[1], student_ids.shape[1])
    same = (
        (teacher_ids[:, :length] == student_ids[:, :length].to(teacher_ids.device))
        & teacher_mask[:, :length].bool()
        & student_mask[:, :length].to(teacher_mask.device).bool()
    )
    return same.long().cumprod(dim=1).bool()


def _restrict_rows(attention: Tensor, keep: Tensor) -> Tensor:
    """[B, L, L] rows restricted to the keys `keep` [B, L] marks and renormalised to sum 1."""
    kept = torch.where(keep[:, None, :], attention, torch.zeros_like(attention))
    return kept / kept.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(kept.dtype).tiny)


def attention_kl(
    teacher_attention: Tensor,
    student_attention: Tensor,
    token_mask: Tensor | None = None,
    shared_tokens: Tensor | None = None,
) -> Tensor:
    """KL between head-averaged attention rows, averaged over real query tokens and sequences.

    teacher_attention: [B, H_t, L_t, L_t]; student_attention: [B, H_s, L_s, L_s] (attention
    probabilities, rows sum to 1); without `shared_tokens` L_t = L_s = L. token_mask: optional
    [B, L], 1/True for real tokens (padding rows are skipped). shared_tokens: optional [B, L'] with
    L' <= L_t, L_s (see `shared_token_prefix`): both maps are cut to the first L' positions, only
    the marked rows and keys count, and rows are renormalised over the marked keys; it replaces
    token_mask. -> scalar float32. The teacher side is detached (it is the target).
    """
    teacher = teacher_attention.detach().float().mean(dim=1)  # [B, L, L]
    student = student_attention.float().mean(dim=1)
    if shared_tokens is not None:
        length = shared_tokens.shape[1]
        token_mask = shared_tokens.bool().to(student.device)
        teacher = _restrict_rows(teacher[:, :length, :length], token_mask)
        student = _restrict_rows(student[:, :length, :length], token_mask)
    log_t = teacher.log()
    log_s = student.clamp_min(_STUDENT_PROB_FLOOR).log()
    per_row = kl_divergence(log_t, log_s)  # [B, L]
    weights = _row_weights(token_mask, per_row.shape).to(per_row.device)
    per_sequence = (per_row * weights).sum(dim=-1) / weights.sum(dim=-1).clamp_min(1.0)
    return per_sequence.mean()


def feature_distillation_loss(
    teacher_attentions: Sequence[Mapping[str, Tensor]],
    student_attentions: Sequence[Mapping[str, Tensor]],
    layer_map: Sequence[int],
    student_scores_final: Tensor,
    positives: Tensor,
    token_masks: Mapping[str, Tensor] | None = None,
    shared_tokens: Mapping[str, Tensor] | None = None,
) -> FeatureDistillationLoss:
    """FD: attention-map KL between mapped layers (teacher detached) + L_stu (Eq. 11).

    Args:
        teacher_attentions: per teacher layer that was asked for, a dict of attention maps
            {kind: [B, H_t, L, L]} (`LayerScores.attentions`; kinds "query"/"passage" or "pair").
        student_attentions: per distilled student layer, the same kind of dicts with [B, H_s, L, L].
        layer_map: len(student_attentions) indices; student_attentions[j] is pulled towards
            teacher_attentions[layer_map[j]]. (The released code distils the last layer only:
            pass the last layer of each and layer_map=[0].)
        student_scores_final: [Q, P] the student's final scores, for the hard loss.
        positives: bool [Q, P], at least one per query.
        token_masks: optional {kind: [B, L]} token masks (1 = real token) – padding rows skipped.
        shared_tokens: optional {kind: [B, L']} masks of the token prefix both models see
            (`shared_token_prefix`), L' <= both maps' lengths; for those kinds the maps are
            restricted to it and renormalised (module docstring), so same-tokenizer maps padded
            to different lengths can be compared.

    Every student kind must exist in the teacher's dict with the same [B, L, L] (the same
    tokenization) unless `shared_tokens` covers it; otherwise a ValueError names the kind, layers
    and shapes.
    """
    if len(layer_map) != len(student_attentions) or not student_attentions:
        raise ValueError(
            f"layer_map has {len(layer_map)} entries for {len(student_attentions)} student layers; "
            "give one teacher index per student layer (at least one)"
        )
    bad = [i for i in layer_map if not 0 <= int(i) < len(teacher_attentions)]
    if bad:
        raise ValueError(
            f"layer_map {list(layer_map)} indexes teacher layers {bad} outside 0..{len(teacher_attentions) - 1}"
        )
    check_positives(positives, student_scores_final.shape)
    check_positives_visible(student_scores_final, positives, "student_scores_final")

    terms = []
    for j, (student_maps, a) in enumerate(zip(student_attentions, layer_map)):
        teacher_maps = teacher_attentions[int(a)]
        missing = sorted(set(student_maps) - set(teacher_maps))
        if missing:
            raise ValueError(
                f"student layer {j} has attention maps {sorted(student_maps)} but teacher layer {a} has "
                f"{sorted(teacher_maps)}; FD needs the same kind of sequences on both sides (a "
                "cross-encoder's query–passage maps have no dual-encoder counterpart)"
            )
        for kind, student_map in student_maps.items():
            teacher_map = teacher_maps[kind]
            if teacher_map.dim() != 4 or student_map.dim() != 4:
                raise ValueError(f"{kind} attention maps must be [B, heads, L, L]")
            t_shape, s_shape = (
                (teacher_map.shape[0], *teacher_map.shape[2:]),
                (student_map.shape[0], *student_map.shape[2:]),
            )
            shared = None if shared_tokens is None else shared_tokens.get(kind)
            if shared is not None:
                if (
                    shared.dim() != 2
                    or shared.shape[0] != t_shape[0]
                    or shared.shape[0] != s_shape[0]
                    or shared.shape[1] > min(t_shape[-1], s_shape[-1])
                ):
                    raise ValueError(
                        f"shared_tokens[{kind!r}] has shape {tuple(shared.shape)}, expected [B, L'] with "
                        f"B = {s_shape[0]} and L' <= {min(t_shape[-1], s_shape[-1])} (teacher layer {a} "
                        f"is {list(t_shape)}, student layer {j} is {list(s_shape)})"
                    )
                terms.append(attention_kl(teacher_map, student_map, shared_tokens=shared))
                continue
            if t_shape != s_shape:
                raise ValueError(
                    f"{kind} attention of teacher layer {a} is [B, L, L] = {list(t_shape)} but of student "
                    f"layer {j} is {list(s_shape)}: FD compares maps token by token and needs the same "
                    f"tokenizer and max lengths (sequence lengths {t_shape[-1]} vs {s_shape[-1]}); "
                    "see check_same_tokenizer, or use LEAD/RD for cross-tokenizer pairs"
                )
            mask = None if token_masks is None else token_masks.get(kind)
            if mask is not None and tuple(mask.shape) != tuple(s_shape[:2]):
                raise ValueError(
                    f"token_masks[{kind!r}] has shape {tuple(mask.shape)}, expected [B, L] = {list(s_shape[:2])}"
                )
            terms.append(attention_kl(teacher_map, student_map, mask))
    feature = torch.stack(terms).mean()
    student_hard = hard_loss(student_scores_final, positives)
    return FeatureDistillationLoss(total=feature + student_hard, feature=feature, student_hard=student_hard)
