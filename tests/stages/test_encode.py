"""encode: order kept despite length sorting, the shard layout, and the stage's input checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lead_core import encode
from lead_core.data.schema import CORPUS, QRELS, SchemaError, read_metadata, write_table
from lead_core.data.text import passage_text
from lead_core.encode.stage import encode_shards, finalize
from lead_core.encode.store import read_meta, write_meta, write_shard
from lead_core.models import load_model
from tests.stages.samples import PASSAGES, QUERY_TEXTS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def de(de_model):
    return load_model(de_model)


def test_passage_text_joins_title_and_text():
    assert passage_text("Title", "Body text.") == "Title Body text."
    assert passage_text("", "Body") == "Body"
    assert passage_text("Title", "") == "Title"


def test_length_sorted_batches_keep_the_input_order(de):
    texts = [passage_text(t, x) for _, t, x in PASSAGES]
    lengths = encode.token_lengths(de, texts, de.config.passage_max_length)
    assert len(set(lengths.tolist())) > 4, "the sample must have different lengths"
    assert (np.argsort(-lengths, kind="stable") != np.arange(len(texts))).any(), "sorting must reorder"
    sorted_batches = encode.encode_texts(de, texts, is_query=False, batch_size=3)
    one_by_one = np.stack([de.encode([t], is_query=False)[0].numpy() for t in texts])
    unsorted_batch = de.encode(texts, is_query=False).numpy()
    np.testing.assert_allclose(sorted_batches, one_by_one, atol=1e-5)
    np.testing.assert_allclose(sorted_batches, unsorted_batch, atol=1e-5)
    # Distinct texts give distinct rows, so a permuted output would fail the checks above.
    assert np.abs(sorted_batches[0] - sorted_batches[1]).max() > 1e-3


def test_max_length_override_truncates_and_is_restored(de):
    texts = [PASSAGES[1][2]]  # the long passage
    full = encode.encode_texts(de, texts, is_query=False)
    short = encode.encode_texts(de, texts, is_query=False, max_length=8)
    six_words = " ".join(texts[0].split()[:6])  # 6 WordPiece tokens + [CLS] + [SEP] = 8
    assert len(de.tokenizer(six_words)["input_ids"]) == 8
    np.testing.assert_allclose(short, de.encode([six_words], is_query=False).numpy(), atol=1e-5)
    assert np.abs(full - short).max() > 1e-3
    assert de.config.passage_max_length == 48


def test_embeddings_round_trip_and_shard_layout(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((23, 5)).astype(np.float32)
    ids = [f"id{i}" for i in range(23)]
    (tmp_path / "emb").mkdir()
    names = []
    for c, start in enumerate(range(0, 23, 10)):
        names.append(f"part-{c:05d}.parquet")
        write_shard(
            tmp_path / "emb" / names[-1], ids[start : start + 10], vectors[start : start + 10], "float16"
        )
    write_meta(tmp_path / "emb", 5, "float16", 23, names, {"x": 1})
    got_ids, got = encode.read_embeddings(tmp_path / "emb")
    assert got_ids == ids and got.dtype == np.float16 and got.shape == (23, 5)
    np.testing.assert_allclose(got, vectors, rtol=1e-3, atol=1e-3)
    assert [len(i) for i, _ in encode.iter_embeddings(tmp_path / "emb")] == [10, 10, 3]
    shard = tmp_path / "emb" / names[0]
    assert read_metadata(shard)["schema"] == "embeddings" and read_metadata(shard)["num_rows"] == 10
    assert pq.read_schema(shard).field("vector").type == pa.list_(pa.float16(), 5)

    meta = json.loads((tmp_path / "emb" / "meta.json").read_text())
    meta["num_rows"] = 24
    (tmp_path / "emb" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="24"):
        encode.read_embeddings(tmp_path / "emb")
    with pytest.raises(ValueError, match="non-finite"):
        write_shard(tmp_path / "bad.parquet", ["a"], np.array([[np.nan, 1.0]]), "float32")


def test_encode_stage_writes_shards_in_input_order(tmp_path, de_model, de, corpus_file, queries_file):
    summary = encode.run(
        encode.Config(
            model=str(de_model), input=str(corpus_file), out=str(tmp_path / "emb"), shard_size=3, batch_size=2
        )
    )
    assert summary == {"rows": 7, "dim": 32, "shards": 3, "processes": 1}
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == [
        "meta.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    meta = read_meta(tmp_path / "emb")
    assert meta["dtype"] == "float16" and meta["config"]["shard_size"] == 3
    ids, vectors = encode.read_embeddings(tmp_path / "emb")
    assert ids == [p[0] for p in PASSAGES]
    expected = de.encode([passage_text(t, x) for _, t, x in PASSAGES], is_query=False).numpy()
    np.testing.assert_allclose(vectors.astype(np.float32), expected, rtol=2e-3, atol=2e-3)

    # Queries are encoded as queries by default.
    encode.run(
        encode.Config(model=str(de_model), input=str(queries_file), out=str(tmp_path / "q"), dtype="float32")
    )
    qids, qvectors = encode.read_embeddings(tmp_path / "q")
    assert qids == [q for q, _ in QUERY_TEXTS]
    np.testing.assert_allclose(
        qvectors, de.encode([t for _, t in QUERY_TEXTS], is_query=True).numpy(), atol=1e-5
    )


def test_ranks_of_a_two_gpu_run_fill_one_directory(tmp_path, de, corpus_file):
    """What torchrun ranks do, run one after the other: each writes every second shard."""
    config = encode.Config(
        model="unused", input=str(corpus_file), out="unused", shard_size=2, dtype="float32"
    )
    directory = tmp_path / "shared"
    directory.mkdir()
    counts = [
        encode_shards(de, str(corpus_file), directory, config, False, de.device, rank, 2) for rank in (0, 1)
    ]
    assert counts == [4, 4]
    assert sorted(p.name for p in directory.iterdir()) == [f"part-{c:05d}.parquet" for c in range(4)]
    meta = finalize(directory, 4, "float32", {})
    assert meta["num_rows"] == 7 and meta["dim"] == 32
    ids, _ = encode.read_embeddings(directory)
    assert ids == [p[0] for p in PASSAGES]
    (directory / "part-00003.parquet").unlink()
    with pytest.raises(RuntimeError, match="part-00003"):
        finalize(directory, 4, "float32", {})


def test_encode_refuses_bad_inputs(tmp_path, de_model, ce_model, corpus_file):
    qrels = write_table(
        pa.table({"query_id": ["q"], "doc_id": ["d"], "relevance": pa.array([1], pa.int32())}),
        tmp_path / "qrels.parquet",
        QRELS,
    )
    out = tmp_path / "emb"
    with pytest.raises(SchemaError, match="'corpus' or 'queries' artifact, found qrels"):
        encode.run(encode.Config(model=str(de_model), input=str(qrels), out=str(out)))
    with pytest.raises(ValueError, match=r"needs a dual encoder \(de\) model, found a cross-encoder"):
        encode.run(encode.Config(model=str(ce_model), input=str(corpus_file), out=str(out)))
    with pytest.raises(SchemaError, match="no such artifact"):
        encode.run(encode.Config(model=str(de_model), input=str(tmp_path / "missing.parquet"), out=str(out)))
    empty = write_table(
        pa.table(
            {
                "doc_id": pa.array([], pa.string()),
                "title": pa.array([], pa.string()),
                "text": pa.array([], pa.string()),
            }
        ),
        tmp_path / "empty.parquet",
        CORPUS,
    )
    with pytest.raises(ValueError, match="no rows"):
        encode.run(encode.Config(model=str(de_model), input=str(empty), out=str(out)))
    assert not out.exists()


@pytest.mark.slow
def test_encode_launched_on_two_ranks_equals_one_process(tmp_path, de_model, corpus_file):
    """`lead encode --nproc 2`: launch() starts two gloo ranks that share the shards (rank 0 writes
    meta.json); the embeddings are those of one process, value for value."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    flags = ["--model", str(de_model), "--input", str(corpus_file), "--shard-size", "2", "--dtype", "float32"]
    command = [sys.executable, "-m", "lead_core.cli", "-v", "encode", *flags, "--device", "cpu"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "emb"), "--nproc", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"processes": 2' in done.stderr  # rank 0's result, logged by -v: two ranks ran
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["meta.json"] + [
        f"part-{c:05d}.parquet" for c in range(4)
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".emb")], "temporary directory left behind"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same kernels, so the same bits
    try:
        config = encode.Config(
            model=str(de_model),
            input=str(corpus_file),
            out=str(tmp_path / "one"),
            shard_size=2,
            dtype="float32",
            device="cpu",
        )
        encode.run(config)
    finally:
        torch.set_num_threads(threads)
    ids, vectors = encode.read_embeddings(tmp_path / "emb")
    one_ids, one_vectors = encode.read_embeddings(tmp_path / "one")
    assert ids == one_ids == [p[0] for p in PASSAGES]
    np.testing.assert_array_equal(vectors, one_vectors)
