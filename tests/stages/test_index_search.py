"""index + search: faiss IndexFlatIP equals brute force; the index directory; the search stage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lead_core import encode, index, search
from lead_core.data.schema import RUN, SchemaError, read_table
from lead_core.data.trec import read_run
from lead_core.encode.store import write_meta, write_shard
from tests.stages.samples import QUERY_TEXTS


def _embeddings_dir(path, ids, vectors, dtype="float32", shard=None):
    """A hand-made embeddings directory (what `lead encode` writes), shards of `shard` rows."""
    path.mkdir()
    shard = shard or len(ids)
    names = []
    for c, start in enumerate(range(0, len(ids), shard)):
        names.append(f"part-{c:05d}.parquet")
        write_shard(path / names[-1], ids[start : start + shard], vectors[start : start + shard], dtype)
    write_meta(path, vectors.shape[1], dtype, len(ids), names, {})
    return path


def test_faiss_top_k_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((50, 24)).astype(np.float32)
    ids = [f"doc{i}" for i in range(len(docs))]
    emb = _embeddings_dir(tmp_path / "emb", ids, docs, shard=700)
    index.build_index(emb, tmp_path / "index")
    faiss_index, loaded_ids, meta = index.load_index(tmp_path / "index")
    assert loaded_ids == ids and meta["num_vectors"] == 3000 and meta["dim"] == 24

    k = 100
    blocks = list(search.search_batches(faiss_index, queries, k, batch_size=16, progress=False))
    assert [b[0] for b in blocks] == [0, 16, 32, 48]
    scores = np.concatenate([b[1] for b in blocks])
    rows = np.concatenate([b[2] for b in blocks])

    exact = queries @ docs.T
    expected_rows = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    np.testing.assert_allclose(scores, np.take_along_axis(exact, expected_rows, 1), rtol=1e-5, atol=1e-4)
    # Same documents in the same order wherever neighbouring scores are not (near-)tied.
    gaps = np.diff(np.take_along_axis(exact, expected_rows, 1), axis=1)
    untied = np.ones_like(rows, dtype=bool)
    untied[:, 1:] &= gaps < -1e-4
    untied[:, :-1] &= gaps < -1e-4
    assert (rows[untied] == expected_rows[untied]).mean() == 1.0
    assert untied.mean() > 0.9

    table = search.run_table([f"q{i}" for i in range(50)], pa.array(ids), scores, rows)
    assert table.num_rows == 50 * k
    assert table.column("rank").to_pylist()[: k + 1] == list(range(1, k + 1)) + [1]
    assert table.column("doc_id")[0].as_py() == ids[rows[0, 0]]


def test_k_larger_than_the_index_is_clipped(tmp_path):
    docs = np.eye(4, dtype=np.float32)
    emb = _embeddings_dir(tmp_path / "emb", ["a", "b", "c", "d"], docs)
    index.build_index(emb, tmp_path / "index")
    faiss_index, _, _ = index.load_index(tmp_path / "index")
    ((_, scores, rows),) = search.search_batches(
        faiss_index, np.array([[0, 0, 2, 1]], np.float32), 10, progress=False
    )
    assert rows[0, :2].tolist() == [2, 3] and sorted(rows[0, 2:].tolist()) == [0, 1]
    assert scores[0, :2].tolist() == [2.0, 1.0]


def test_index_refuses_a_broken_embeddings_directory(tmp_path):
    emb = _embeddings_dir(tmp_path / "emb", ["a", "b"], np.ones((2, 3), np.float32))
    (emb / "part-00000.parquet").unlink()
    with pytest.raises(SchemaError, match="missing"):
        index.run(index.Config(embeddings=str(emb), out=str(tmp_path / "index")))
    assert not (tmp_path / "index").exists()
    with pytest.raises(FileNotFoundError):
        index.run(index.Config(embeddings=str(tmp_path / "nothing"), out=str(tmp_path / "index")))


def test_search_stage_matches_brute_force_over_the_encoded_corpus(
    tmp_path, de_model, corpus_file, queries_file
):
    encode.run(
        encode.Config(model=str(de_model), input=str(corpus_file), out=str(tmp_path / "emb"), dtype="float32")
    )
    index.run(index.Config(embeddings=str(tmp_path / "emb"), out=str(tmp_path / "index")))
    summary = search.run(
        search.Config(
            index=str(tmp_path / "index"),
            model=str(de_model),
            queries=str(queries_file),
            out_run=str(tmp_path / "run.parquet"),
            out_trec=str(tmp_path / "run.trec"),
            k=5,
            device="cpu",
        )
    )
    assert summary == {"queries": 3, "rows": 15, "k": 5}
    run_table = read_table(tmp_path / "run.parquet", RUN)
    # Brute force with the encoder's own embeddings.
    doc_ids, docs = encode.read_embeddings(tmp_path / "emb")
    from lead_core.models import load_model

    model = load_model(de_model)
    query_vectors = model.encode([text for _, text in QUERY_TEXTS], is_query=True)
    exact = query_vectors.numpy() @ docs.T
    for qi, qid in enumerate(["q0", "q1", "q2"]):
        rows = run_table.filter(pa.compute.equal(run_table.column("query_id"), qid))
        expected = [doc_ids[j] for j in np.argsort(-exact[qi], kind="stable")[:5]]
        got = rows.column("doc_id").to_pylist()
        assert sorted(got) == sorted(expected)
        np.testing.assert_allclose(
            rows.column("score").to_numpy(), np.sort(exact[qi])[::-1][:5], rtol=1e-4, atol=1e-4
        )
    trec = read_run(tmp_path / "run.trec")
    assert trec.num_rows == 15 and set(trec.column("doc_id").to_pylist()) == set(
        run_table.column("doc_id").to_pylist()
    )


def test_search_refuses_a_model_of_another_dimension(
    tmp_path, de_model, de_model_48, corpus_file, queries_file
):
    encode.run(encode.Config(model=str(de_model), input=str(corpus_file), out=str(tmp_path / "emb")))
    index.run(index.Config(embeddings=str(tmp_path / "emb"), out=str(tmp_path / "index")))
    config = search.Config(
        index=str(tmp_path / "index"),
        model=str(de_model_48),
        queries=str(queries_file),
        out_run=str(tmp_path / "run.parquet"),
        k=3,
        device="cpu",
    )
    with pytest.raises(ValueError, match=r"48-d query vectors but the index .* holds 32-d"):
        search.run(config)
    assert not (tmp_path / "run.parquet").exists()
