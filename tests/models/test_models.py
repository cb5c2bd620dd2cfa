"""DE, CB and CE on tiny random backbones: per-layer scores, masks, gather, save/load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

from lead_core.models import (
    BackboneError,
    ModelConfig,
    ModelLoadError,
    build_model,
    load_model,
)
from lead_core.models.encoder import encoder_blocks, model_inputs

QUERIES = ["what do red blood cells carry", "how does the heart pump"]
PASSAGES = [
    "red blood cells carry oxygen from the lungs to the tissues",
    "the stock market fell",
    "mitochondria make energy",
    "the heart is a muscle that pumps blood through the body by contracting",
    "a short one",
    "rain in spain falls mainly on the plain",
]  # Q=2 queries, G=3 passages each


def make(backbone: Path, architecture: str, **kwargs):
    torch.manual_seed(0)  # appended linear layers and the CE head are random-initialised
    return build_model(ModelConfig(architecture=architecture, backbone=str(backbone), **kwargs))


def hidden_states(model, batch, prefix):
    """All layers' token states straight from the backbone: the reference for hook capture."""
    inputs = model_inputs(model.backbone, batch, prefix)
    out = model.backbone(**inputs, output_hidden_states=True)
    return out.hidden_states, inputs["attention_mask"]


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_mpnet"])
def backbone(request) -> Path:
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("architecture", ["de", "cb", "ce"])
def test_forward_backward_shapes(backbone, architecture):
    appended = [] if architecture == "ce" else [24]
    model = make(backbone, architecture, appended_linear=appended).train()
    blocks = len(encoder_blocks(model.backbone))
    assert model.num_layers == blocks + len(appended)
    batch = model.prepare(QUERIES, PASSAGES)
    expected_p = 3 if architecture == "ce" else 6
    last = model.num_layers - 1
    for layers in ([last], [0, last], [1, 2, blocks - 1], None):
        model.zero_grad()
        out = model(batch, layers=layers)
        chosen = [last] if layers is None else layers
        assert out.layers == chosen
        assert out.layer_scores.shape == (len(chosen), 2, expected_p)
        assert torch.isfinite(out.layer_scores).all()
        out.layer_scores.sum().backward()
        embeddings = model.backbone.get_input_embeddings().weight
        assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    torch.testing.assert_close(out.scores, out.layer_scores[-1])


def test_layer_selection_is_validated(tiny_bert):
    model = make(tiny_bert, "de")
    batch = model.prepare(QUERIES, PASSAGES)
    for bad in ([2, 1], [1, 1], [4], [-1], []):
        with pytest.raises(ValueError, match="layer"):
            model(batch, layers=bad)
    with pytest.raises(ValueError, match="Q\\*G"):
        model.prepare(QUERIES, PASSAGES[:5])
    for bad_config in ({"pooling": "max"}, {"appended_linear": [0]}, {"architecture": "xx"}):
        with pytest.raises(ValueError, match="pooling|appended_linear|architecture"):
            make(tiny_bert, **{"architecture": "de", **bad_config})


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dual_encoder_layer_scores_match_hidden_states(backbone, pooling):
    model = make(backbone, "de", pooling=pooling)
    batch = model.prepare(QUERIES, PASSAGES)
    layers = [0, 2, model.num_layers - 1]
    scores = model(batch, layers=layers).layer_scores
    q_states, q_mask = hidden_states(model, batch, "query")
    p_states, p_mask = hidden_states(model, batch, "passage")

    def pooled(states, mask):
        if pooling == "cls":
            return states[:, 0]
        m = mask.unsqueeze(-1).float()
        return (states * m).sum(1) / m.sum(1)

    for k, layer in enumerate(layers):
        q = pooled(q_states[layer + 1], q_mask)  # hidden_states[0] is the embedding output
        p = pooled(p_states[layer + 1], p_mask)
        torch.testing.assert_close(scores[k], q @ p.T, rtol=1e-5, atol=1e-5)
    # The layers really differ (a capture of the wrong block could not pass the loop above).
    assert not torch.allclose(scores[0], scores[1])


def _hand_maxsim(q_tokens, q_weight, p_tokens, p_mask):
    """Eq. 2 with loops, one query-passage pair at a time."""
    out = torch.zeros(q_tokens.shape[0], p_tokens.shape[0])
    for i in range(q_tokens.shape[0]):
        for j in range(p_tokens.shape[0]):
            real = p_tokens[j][p_mask[j].bool()]
            sims = q_tokens[i] @ real.T  # [Lq, real tokens]
            out[i, j] = (sims.max(dim=1).values * q_weight[i]).sum()
    return out


@pytest.mark.parametrize("augmentation", [True, False])
def test_colbert_matches_hand_maxsim_last_layer_normalised(backbone, augmentation):
    model = make(backbone, "cb", query_augmentation=augmentation, query_max_length=12)
    batch = model.prepare(QUERIES, PASSAGES)
    if augmentation:
        ids = batch["query_input_ids"]
        assert ids.shape[1] == 12 and bool(batch["query_attention_mask"].all())
        assert (ids == model.tokenizer.mask_token_id).sum() > 0
    last = model.num_layers - 1
    scores = model(batch, layers=[1, last]).layer_scores
    q_states, q_mask = hidden_states(model, batch, "query")
    p_states, p_mask = hidden_states(model, batch, "passage")
    q_weight = torch.ones_like(q_mask) if augmentation else q_mask
    raw = _hand_maxsim(q_states[2], q_weight, p_states[2], p_mask)  # intermediate: raw vectors
    torch.testing.assert_close(scores[0], raw, rtol=1e-4, atol=1e-4)
    final = _hand_maxsim(
        F.normalize(q_states[last + 1], dim=-1), q_weight, F.normalize(p_states[last + 1], dim=-1), p_mask
    )
    torch.testing.assert_close(scores[1], final, rtol=1e-4, atol=1e-4)
    # Cosine MaxSim is bounded by the number of scored query tokens.
    assert (scores[1] <= q_weight.sum(1, keepdim=True) + 1e-4).all()


def test_colbert_passage_padding_does_not_change_scores(tiny_bert):
    model = make(tiny_bert, "cb")
    batch = model.prepare(QUERIES, PASSAGES)
    extra = 7
    padded = dict(batch)
    pad_id = model.tokenizer.pad_token_id
    for key, fill in (
        ("passage_input_ids", pad_id),
        ("passage_attention_mask", 0),
        ("passage_token_type_ids", 0),
    ):
        padded[key] = F.pad(batch[key], (0, extra), value=fill)
    layers = [0, 2, model.num_layers - 1]
    base = model(batch, layers=layers).layer_scores
    torch.testing.assert_close(model(padded, layers=layers).layer_scores, base, rtol=1e-5, atol=1e-5)
    # Without the mask the pad tokens would win some maxima: the test can tell the difference.
    p_states, _ = hidden_states(model, padded, "passage")
    q_states, _ = hidden_states(model, padded, "query")
    unmasked = _hand_maxsim(
        q_states[1], torch.ones(2, q_states[1].shape[1]), p_states[1], torch.ones(6, p_states[1].shape[1])
    )
    assert not torch.allclose(unmasked, base[0], atol=1e-3)


def test_cross_encoder_scores_each_query_against_its_own_group(tiny_mpnet):
    model = make(tiny_mpnet, "ce")
    batch = model.prepare(QUERIES, PASSAGES)
    assert int(batch["group_size"]) == 3 and batch["pair_input_ids"].shape[0] == 6
    out = model(batch, layers=[0, model.num_layers - 1])
    assert out.layer_scores.shape == (2, 2, 3)
    for i, query in enumerate(QUERIES):
        for j in range(3):
            single = model.score_pairs([query], [PASSAGES[i * 3 + j]])
            torch.testing.assert_close(out.scores[i, j], single[0], rtol=1e-5, atol=1e-5)
    # One head on every layer (Eq. 3): layer 0's scores are the head applied to block 1's [CLS].
    states, _ = hidden_states(model, batch, "pair")
    torch.testing.assert_close(
        out.layer_scores[0], model.head(states[1][:, 0]).view(2, 3), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="appended_linear"):
        make(tiny_mpnet, "ce", appended_linear=[16])


@pytest.mark.parametrize("architecture", ["de", "cb"])
def test_gather_doubles_passages_and_keeps_gradients_local(tiny_bert, architecture):
    model = make(tiny_bert, architecture, appended_linear=[16])  # eval: two forwards agree
    batch = model.prepare(QUERIES, PASSAGES)
    layers = [0, 3, model.num_layers - 1]
    plain = model(batch, layers=layers).layer_scores
    sent = {}

    def fake_gather(local):
        sent["local"] = local
        local.retain_grad()
        return torch.cat([local, local.detach()])  # "the other rank" holds a copy, no gradient

    out = model(batch, layers=layers, gather=fake_gather).layer_scores
    assert out.shape == (3, 2, 12)
    torch.testing.assert_close(out[..., :6], plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[..., 6:], plain, rtol=1e-5, atol=1e-5)
    out[..., 6:].sum().backward()
    assert sent["local"].grad is None or not sent["local"].grad.any()
    model.zero_grad()
    out = model(batch, layers=layers, gather=fake_gather).layer_scores
    out[..., :6].sum().backward()
    assert sent["local"].grad.abs().sum() > 0


def test_colbert_gather_carries_each_ranks_padding_mask(tiny_bert):
    """Two simulated ranks with different passage lengths: the remote passages are scored with
    the remote masks, exactly as if all passages had been in one local batch."""
    model = make(tiny_bert, "cb", passage_max_length=24)
    queries = QUERIES
    rank0 = ["short", "tiny", "a b", "c", "d e f", "g"]
    rank1 = PASSAGES  # longer passages: different padding
    remote = {}
    model(model.prepare(queries, rank1), layers=[0, 3], gather=lambda t: remote.setdefault("t", t))
    gathered = model(
        model.prepare(queries, rank0),
        layers=[0, 3],
        gather=lambda t: torch.cat([t, remote["t"].detach()]),
    ).layer_scores
    together = model(model.prepare(queries, rank0 + rank1), layers=[0, 3]).layer_scores
    torch.testing.assert_close(gathered, together, rtol=1e-5, atol=1e-5)


def test_cross_tokenizer_teacher_and_student_score_the_same_batch(tiny_mpnet, tiny_bert):
    teacher = make(tiny_mpnet, "cb").train()
    student = make(tiny_bert, "de").train()
    t_batch = teacher.prepare(QUERIES, PASSAGES)
    s_batch = student.prepare(QUERIES, PASSAGES)
    assert teacher.tokenizer.cls_token != student.tokenizer.cls_token
    assert t_batch["passage_input_ids"][0, 0] != s_batch["passage_input_ids"][0, 0]
    t = teacher(t_batch, layers=[1, 3, 5])
    s = student(s_batch, layers=[0, 2, 3])
    assert t.layer_scores.shape == s.layer_scores.shape == (3, 2, 6)
    # A KL between the two layer distributions trains both (joint training).
    kl = F.kl_div(
        F.log_softmax(s.layer_scores, -1),
        F.log_softmax(t.layer_scores, -1),
        log_target=True,
        reduction="batchmean",
    )
    kl.backward()
    for model in (teacher, student):
        assert model.backbone.get_input_embeddings().weight.grad.abs().sum() > 0


def test_attention_maps_for_selected_layers(tiny_bert):
    model = make(tiny_bert, "de")
    batch = model.prepare(QUERIES, PASSAGES)
    before = model.backbone.config._attn_implementation
    out = model(batch, layers=[1, 3], output_attentions=True)
    assert len(out.attentions) == 2
    q_len, p_len = batch["query_input_ids"].shape[1], batch["passage_input_ids"].shape[1]
    heads = model.backbone.config.num_attention_heads
    assert out.attentions[0]["query"].shape == (2, heads, q_len, q_len)
    assert out.attentions[1]["passage"].shape == (6, heads, p_len, p_len)
    torch.testing.assert_close(out.attentions[0]["query"].sum(-1), torch.ones(2, heads, q_len))
    assert model.backbone.config._attn_implementation == before  # switched back after the call
    torch.testing.assert_close(
        out.layer_scores, model(batch, layers=[1, 3]).layer_scores, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("architecture", "family"), [("de", "tiny_bert"), ("cb", "tiny_mpnet"), ("ce", "tiny_bert")]
)
def test_save_load_round_trip_is_exact(request, tmp_path, architecture, family):
    appended = [] if architecture == "ce" else [16, 8]
    model = make(request.getfixturevalue(family), architecture, appended_linear=appended)
    batch = model.prepare(QUERIES, PASSAGES)
    layers = list(range(model.num_layers))
    model.save(tmp_path / "model")
    saved = tmp_path / "model"
    assert json.loads((saved / "lead_model.json").read_text())["architecture"] == architecture
    assert not list(tmp_path.glob(".model.tmp-*"))
    loaded = load_model(saved)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert torch.equal(loaded(batch, layers=layers).layer_scores, model(batch, layers=layers).layer_scores)
    assert torch.equal(loaded.score_pairs(QUERIES, PASSAGES[:2]), model.score_pairs(QUERIES, PASSAGES[:2]))
    # The backbone part is a folder that transformers itself loads, with the same weights.
    plain = transformers.AutoModel.from_pretrained(saved)
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(plain.state_dict()[name], tensor), name


def test_load_fails_loudly_on_tampered_or_missing_weights(tiny_bert, tmp_path):
    model = make(tiny_bert, "de", appended_linear=[16])
    saved = tmp_path / "model"
    model.save(saved)
    weights = saved / "model.safetensors"
    original = load_file(weights)

    missing = dict(original)
    dropped = sorted(missing)[3]
    del missing[dropped]
    save_file(missing, weights)
    with pytest.raises(ModelLoadError, match=f"missing 1 \\(model.safetensors:{dropped}\\)"):
        load_model(saved)

    save_file({**original, "encoder.layer.9.bogus": torch.zeros(2)}, weights)
    with pytest.raises(ModelLoadError, match="unexpected 1 \\(model.safetensors:encoder.layer.9.bogus\\)"):
        load_model(saved)

    (saved / "lead_head.safetensors").unlink()
    save_file(original, weights)
    with pytest.raises(
        ModelLoadError,
        match="missing 2 \\(lead_head.safetensors:appended.0.bias, lead_head.safetensors:appended.0.weight\\)",
    ):
        load_model(saved)

    weights.unlink()
    with pytest.raises(ModelLoadError, match=f"{saved}: no model weights"):
        load_model(saved)
    with pytest.raises(ModelLoadError, match="lead_model.json"):
        load_model(tmp_path)


def test_backbone_folder_without_weights_is_a_clear_error(tiny_bert, tmp_path):
    folder = tmp_path / "empty-backbone"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_bert / "config.json").read_text())
    with pytest.raises(BackboneError, match=f"{folder}: no model weights"):
        make(folder, "de")
    # A checkpoint with fewer blocks than its config: random blocks would be silently wrong.
    deeper = tmp_path / "deeper"
    shutil.copytree(tiny_bert, deeper)
    config = json.loads((deeper / "config.json").read_text())
    (deeper / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5}))
    with pytest.raises(BackboneError, match="missing weights \\['encoder.layer.4"):
        make(deeper, "de")
    with pytest.raises(BackboneError, match="block list"):
        encoder_blocks(torch.nn.Linear(2, 2))


def test_distilbert_backbone(tmp_path, tiny_bert):
    """A third family with another block path (transformer.layer) and no token_type_ids."""
    config = transformers.DistilBertConfig(vocab_size=30522, dim=32, n_layers=3, n_heads=2, hidden_dim=64)
    torch.manual_seed(0)
    transformers.DistilBertModel(config).save_pretrained(tmp_path / "distil")
    transformers.AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "distil")
    model = make(tmp_path / "distil", "cb")
    assert model.num_layers == 3
    out = model(model.prepare(QUERIES, PASSAGES), layers=[0, 1, 2])
    assert out.layer_scores.shape == (3, 2, 6)
