"""The torch search path (lead_core.search.exact): equal to faiss's IndexFlatIP, reads faiss's file
without faiss, and is what `backend: auto` picks when faiss has no GPU build."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from lead_core import encode, index, search
from lead_core.data.schema import RUN, read_table
from lead_core.search.exact import TorchFlatIndex, exact_topk, read_flat_index

# SciFact's size: 5,183 passages, 300 test claims; 384-d like all-MiniLM-L6-v2.
SCIFACT_DOCS, SCIFACT_QUERIES, DIM = 5183, 300, 384


def _unit_rows(rng, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_ranking(scores, rows, ref_scores, ref_rows, tie: float = 1e-6) -> None:
    """Equal scores (to `tie`), and equal rows wherever a score is not within `tie` of a
    neighbour's (tied results may come in either order)."""
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=tie)
    gaps = np.diff(ref_scores, axis=1)
    clear = np.ones_like(ref_scores, dtype=bool)
    clear[:, 1:] &= np.abs(gaps) > tie
    clear[:, :-1] &= np.abs(gaps) > tie
    assert clear.mean() > 0.9  # the check has teeth: most positions are unambiguous
    np.testing.assert_array_equal(rows[clear], ref_rows[clear])


def test_torch_top_k_equals_faiss_on_scifact_sized_vectors():
    rng = np.random.default_rng(0)
    docs, queries = _unit_rows(rng, SCIFACT_DOCS, DIM), _unit_rows(rng, SCIFACT_QUERIES, DIM)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(docs)
    ref_scores, ref_rows = flat.search(queries, 1000)
    # Corpus blocks of 1,000 rows: the running top-1000 is merged across 6 blocks.
    scores, rows = exact_topk(torch.from_numpy(docs), torch.from_numpy(queries), 1000, corpus_block=1000)
    assert scores.dtype == torch.float32 and rows.dtype == torch.int64
    assert_same_ranking(scores.numpy(), rows.numpy(), ref_scores, ref_rows)


def test_k_beyond_the_corpus_and_query_blocks():
    rng = np.random.default_rng(1)
    docs, queries = _unit_rows(rng, 50, 8), _unit_rows(rng, 7, 8)
    searcher = TorchFlatIndex(torch.from_numpy(docs), query_block=3, corpus_block=16)
    scores, rows = searcher.search(queries, 80)
    assert scores.shape == rows.shape == (7, 50)  # k clipped to the corpus, as faiss via search_batches
    expected = queries @ docs.T
    np.testing.assert_array_equal(rows, np.argsort(-expected, axis=1, kind="stable"))
    np.testing.assert_allclose(scores, -np.sort(-expected, axis=1), atol=1e-6)


def test_read_flat_index_reads_what_faiss_writes(tmp_path):
    rng = np.random.default_rng(2)
    docs = _unit_rows(rng, 1000, 24)
    flat = faiss.IndexFlatIP(24)
    flat.add(docs)
    path = tmp_path / "index.faiss"
    faiss.write_index(flat, str(path))
    d, ntotal, blocks = read_flat_index(path, rows_per_read=300)
    assert (d, ntotal) == (24, 1000)
    np.testing.assert_array_equal(np.concatenate(list(blocks)), docs)

    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        read_flat_index(path)
    l2 = faiss.IndexFlatL2(24)
    l2.add(docs)
    faiss.write_index(l2, str(path))
    with pytest.raises(ValueError, match="not a faiss IndexFlatIP file"):
        read_flat_index(path)


def test_auto_backend(monkeypatch):
    from lead_core.search import stage  # choose_backend reads gpu_available / faiss_installed there

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(stage, "gpu_available", lambda: False)
    assert search.choose_backend("auto", "auto", cpu) == "faiss"
    assert search.choose_backend("auto", "auto", cuda) == "torch"  # faiss without a GPU build
    assert search.choose_backend("auto", "no", cuda) == "faiss"
    assert search.choose_backend("torch", "auto", cpu) == "torch"
    monkeypatch.setattr(stage, "gpu_available", lambda: True)
    assert search.choose_backend("auto", "auto", cuda) == "faiss"
    monkeypatch.setattr(stage, "gpu_available", lambda: False)
    monkeypatch.setattr(stage, "faiss_installed", lambda: False)
    assert search.choose_backend("auto", "auto", cpu) == "torch"


def test_search_stage_torch_backend_writes_faiss_backend_run(tmp_path, de_model, corpus_file, queries_file):
    encode.run(
        encode.Config(model=str(de_model), input=str(corpus_file), out=str(tmp_path / "emb"), dtype="float32")
    )
    index.run(index.Config(embeddings=str(tmp_path / "emb"), out=str(tmp_path / "index")))
    runs = {}
    for backend in ("faiss", "torch"):
        config = search.Config(
            index=str(tmp_path / "index"),
            model=str(de_model),
            queries=str(queries_file),
            out_run=str(tmp_path / f"{backend}.parquet"),
            k=5,
            device="cpu",
            backend=backend,
        )
        assert search.run(config) == {"queries": 3, "rows": 15, "k": 5}
        runs[backend] = read_table(tmp_path / f"{backend}.parquet", RUN)
    for column in ("query_id", "doc_id", "rank"):
        assert runs["torch"].column(column).to_pylist() == runs["faiss"].column(column).to_pylist()
    np.testing.assert_allclose(
        runs["torch"].column("score").to_numpy(), runs["faiss"].column("score").to_numpy(), atol=1e-6
    )


@pytest.mark.slow
def test_search_launched_on_two_ranks_writes_the_one_process_run(
    tmp_path, de_model, corpus_file, queries_file
):
    """Two gloo ranks each search a share of the queries (2 and 1 of 3); rank 0 gathers and writes
    the run one process writes (queries encoded in other batches: scores agree to 1e-4)."""
    from lead_core.distributed import launch

    encode.run(
        encode.Config(model=str(de_model), input=str(corpus_file), out=str(tmp_path / "emb"), dtype="float32")
    )
    index.run(index.Config(embeddings=str(tmp_path / "emb"), out=str(tmp_path / "index")))
    tables, summaries = [], []
    for nproc in (1, 2):
        config = search.Config(
            index=str(tmp_path / "index"),
            model=str(de_model),
            queries=str(queries_file),
            out_run=str(tmp_path / f"run{nproc}.parquet"),
            k=5,
            device="cpu",
            backend="torch",
        )
        summaries.append(launch(search.run, config, nproc=nproc))
        tables.append(read_table(tmp_path / f"run{nproc}.parquet", RUN))
    assert summaries[0] == summaries[1] == {"queries": 3, "rows": 15, "k": 5}
    for column in ("query_id", "doc_id", "rank"):
        assert tables[1].column(column).to_pylist() == tables[0].column(column).to_pylist()
    np.testing.assert_allclose(
        tables[1].column("score").to_numpy(), tables[0].column("score").to_numpy(), atol=1e-4
    )
