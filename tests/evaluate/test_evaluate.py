"""`lead evaluate`: hand-computed values, equality with pytrec_eval (trec_eval) on real BM25 runs,
the paired t-test, TREC vs Parquet inputs, the CLI and bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import pytrec_eval
from scipy.stats import ttest_rel

from lead_core.cli import main as cli_main
from lead_core.data.schema import QRELS, RUN, write_table
from lead_core.data.trec import read_qrels, read_run, write_trec_run
from lead_core.evaluate import EvalResult, evaluate_run, format_table, paired_ttest
from tests.bm25 import helpers


def _qrels(rows):
    q, d, r = zip(*rows)
    return pa.table({"query_id": list(q), "doc_id": list(d), "relevance": pa.array(r, pa.int32())})


def _run(rows):
    q, d, s = zip(*rows)
    return pa.table(
        {
            "query_id": list(q),
            "doc_id": list(d),
            "rank": pa.array([0] * len(q), pa.int32()),
            "score": pa.array(s, pa.float32()),
        }
    )


# Two queries. q1: grades d1=1, d2=0, d3=2; q2: d4=1.
TOY_QRELS = _qrels([("q1", "d1", 1), ("q1", "d2", 0), ("q1", "d3", 2), ("q2", "d4", 1)])
# q1 ranks d2, d1, d5, d3; q2 ranks d6, d7, d4.
TOY_RUN = _run(
    [
        ("q1", "d2", 3.0),
        ("q1", "d1", 2.0),
        ("q1", "d5", 1.0),
        ("q1", "d3", 0.5),
        ("q2", "d6", 1.0),
        ("q2", "d7", 0.9),
        ("q2", "d4", 0.8),
    ]
)


def test_toy_values_by_hand():
    result = evaluate_run(TOY_RUN, TOY_QRELS)
    # q1: relevant d1 at rank 2, d3 at rank 4. q2: d4 at rank 3.
    ndcg_q1 = (1 / math.log2(3) + 2 / math.log2(5)) / (2 / math.log2(2) + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(4)) / 1
    assert result.per_query["q1"] == pytest.approx(
        {"RR@10": 1 / 2, "AP@1000": (1 / 2 + 2 / 4) / 2, "R@1000": 1.0, "nDCG@10": ndcg_q1}
    )
    assert result.per_query["q2"] == pytest.approx(
        {"RR@10": 1 / 3, "AP@1000": 1 / 3, "R@1000": 1.0, "nDCG@10": 0.5}
    )
    assert result.aggregate == pytest.approx(
        {
            "RR@10": (1 / 2 + 1 / 3) / 2,
            "AP@1000": (1 / 2 + 1 / 3) / 2,
            "R@1000": 1.0,
            "nDCG@10": (ndcg_q1 + ndcg_q2) / 2,
        }
    )
    # Relevance level 2: only q1's d3 (rank 4) counts for binary measures; q2 has nothing relevant.
    # nDCG keeps the raw grades.
    graded = evaluate_run(TOY_RUN, TOY_QRELS, relevance_level=2)
    assert graded.aggregate == pytest.approx(
        {"RR@10": 1 / 4 / 2, "AP@1000": 1 / 4 / 2, "R@1000": 1 / 2, "nDCG@10": (ndcg_q1 + ndcg_q2) / 2}
    )
    assert graded.measures["AP@1000"] == "AP(rel=2)@1000"
    # Cut-offs: RR@1 and P@2 see only the top of each ranking.
    cut = evaluate_run(TOY_RUN, TOY_QRELS, ["RR@1", "RR@2", "P@2"])
    assert cut.aggregate == pytest.approx({"RR@1": 0.0, "RR@2": 0.25, "P@2": 0.25})


def test_missing_queries_score_zero_and_ties_follow_trec_eval():
    qrels = pa.concat_tables([TOY_QRELS, _qrels([("q3", "d9", 1)])])
    result = evaluate_run(TOY_RUN, qrels, ["RR@10"])
    assert result.num_queries == 3
    assert result.per_query["q3"] == {"RR@10": 0.0}  # trec_eval -c
    assert result.aggregate["RR@10"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    # trec_eval orders equal scores by doc id descending: "b" before "a".
    tie = _run([("q", "a", 1.0), ("q", "b", 1.0)])
    tie_qrels = _qrels([("q", "a", 1)])
    assert evaluate_run(tie, tie_qrels, ["RR@10", "RR@1", "RR"]).aggregate == {
        "RR@10": 0.5,
        "RR@1": 0.0,
        "RR": 0.5,
    }


def _pytrec(run: pa.Table, qrels: pa.Table, relevance_level: int) -> dict[str, float]:
    """Default measures straight from pytrec_eval (trec_eval -c -l L; RR@10 = -M 10 recip_rank)."""
    qd: dict = {}
    for q, d, r in zip(*(qrels.column(c).to_pylist() for c in ("query_id", "doc_id", "relevance"))):
        qd.setdefault(q, {})[d] = r
    rd: dict = {}
    for q, d, s in zip(*(run.column(c).to_pylist() for c in ("query_id", "doc_id", "score"))):
        rd.setdefault(q, {})[d] = s
    top10 = {
        q: dict(sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)[:10]) for q, docs in rd.items()
    }
    full = pytrec_eval.RelevanceEvaluator(
        qd, {"map_cut_1000", "recall_1000", "ndcg_cut_10"}, relevance_level=relevance_level
    )
    rr = pytrec_eval.RelevanceEvaluator(qd, {"recip_rank"}, relevance_level=relevance_level)
    a, b = full.evaluate(rd), rr.evaluate(top10)
    n = len(qd)
    return {
        "RR@10": sum(v["recip_rank"] for v in b.values()) / n,
        "AP@1000": sum(v["map_cut_1000"] for v in a.values()) / n,
        "R@1000": sum(v["recall_1000"] for v in a.values()) / n,
        "nDCG@10": sum(v["ndcg_cut_10"] for v in a.values()) / n,
    }


def test_equals_pytrec_eval_on_scifact_bm25(datasets):
    paths = helpers.scifact(datasets)
    run, qrels = read_run(helpers.bm25(paths)["run"]), read_qrels(paths["qrels"])
    result = evaluate_run(run, qrels)
    expected = _pytrec(run, qrels, 1)
    assert result.aggregate == pytest.approx(expected, abs=1e-9)
    assert result.aggregate["nDCG@10"] > 0.6  # a real run, not an empty one


def test_equals_pytrec_eval_on_dl19_bm25_graded(datasets):
    paths = helpers.dl_pools(datasets, "dl19")
    run, qrels = read_run(helpers.bm25(paths, **helpers.DL_SETTINGS)["run"]), read_qrels(paths["qrels"])
    result = evaluate_run(run, qrels, relevance_level=2)
    expected = _pytrec(run, qrels, 2)
    assert result.aggregate == pytest.approx(expected, abs=1e-9)
    assert expected != pytest.approx(_pytrec(run, qrels, 1), abs=1e-3)  # the level matters on DL19
    # the same measures spelt with rel=2, at the default relevance level
    spelt = evaluate_run(run, qrels, ["RR(rel=2)@10", "AP(rel=2)@1000", "R(rel=2)@1000", "nDCG@10"])
    assert list(spelt.aggregate.values()) == pytest.approx(list(expected.values()), abs=1e-9)


def test_trec_and_parquet_inputs_agree(datasets, tmp_path):
    paths = helpers.dl_pools(datasets, "dl19")
    out = helpers.bm25(paths, **helpers.DL_SETTINGS)
    official = datasets / "msmarco-dl19-dl20-pools" / "qrels.dl19.txt"  # every judgement, in TREC format
    write_table(read_qrels(official), tmp_path / "qrels.parquet", QRELS)
    from_parquet = evaluate_run(
        read_run(out["run"]), read_qrels(tmp_path / "qrels.parquet"), relevance_level=2
    )
    from_trec = evaluate_run(read_run(out["trec"]), read_qrels(official), relevance_level=2)
    assert from_trec.per_query == from_parquet.per_query
    assert from_trec.aggregate == from_parquet.aggregate


def test_trec_export_keeps_float32_scores_apart(datasets):
    # SciFact claim 873 has two BM25 scores one float32 step apart (3.78898287, 3.78898263) at
    # ranks 10 and 11; six decimals would print both as 3.788983, and trec_eval's tie order
    # (doc id descending) would then push the relevant one out of the top 10.
    paths = helpers.scifact(datasets)
    out = helpers.bm25(paths)
    qrels = read_qrels(paths["qrels"])
    parquet, trec = read_run(out["run"]), read_run(out["trec"])
    assert trec.column("score").equals(parquet.column("score"))
    assert evaluate_run(trec, qrels).per_query == evaluate_run(parquet, qrels).per_query


def test_paired_ttest_equals_scipy():
    a = [0.5, 0.2, 0.9, 0.4, 0.7]
    b = [0.3, 0.25, 0.6, 0.4, 0.1]
    c = [0.1, 0.0, 1.0, 0.3, 0.2]
    qids = [f"q{i}" for i in range(5)]
    x = EvalResult({}, {q: {"m": u, "n": v} for q, u, v in zip(qids, a, c)})
    y = EvalResult({}, {q: {"m": u, "n": v} for q, u, v in zip(qids, b, b)})
    x.aggregate, y.aggregate = {"m": np.mean(a), "n": np.mean(c)}, {"m": np.mean(b), "n": np.mean(b)}
    p = paired_ttest(x, y)
    assert p["m"] == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-12)
    assert p["n"] == pytest.approx(ttest_rel(c, b).pvalue, rel=1e-12)
    assert 0 < p["m"] < 1 and p["m"] != pytest.approx(p["n"])
    assert math.isnan(paired_ttest(x, x)["m"])
    z = EvalResult({"m": 0.0}, {"other": {"m": 0.0}})
    with pytest.raises(ValueError, match="same queries"):
        paired_ttest(x, z)


def test_paired_ttest_counts_missing_queries_as_zero():
    partial = TOY_RUN.filter(pa.compute.equal(TOY_RUN.column("query_id"), "q1"))
    full, part = evaluate_run(TOY_RUN, TOY_QRELS, ["AP"]), evaluate_run(partial, TOY_QRELS, ["AP"])
    assert part.per_query["q2"] == {"AP": 0.0}
    # per-query AP: full (0.5, 1/3), partial (0.5, 0)
    assert paired_ttest(full, part)["AP"] == pytest.approx(ttest_rel([0.5, 1 / 3], [0.5, 0.0]).pvalue)


def test_bad_inputs():
    other = _run([("x1", "d1", 1.0)])
    with pytest.raises(ValueError, match="names none of the 2 qrels queries"):
        evaluate_run(other, TOY_QRELS)
    with pytest.raises(ValueError, match="unknown measure 'nDCG@ten'"):
        evaluate_run(TOY_RUN, TOY_QRELS, ["nDCG@10", "nDCG@ten"])
    with pytest.raises(ValueError, match="unknown measure 'Precision'"):
        evaluate_run(TOY_RUN, TOY_QRELS, ["Precision"])
    nan = pa.concat_tables([TOY_RUN, _run([("q2", "d8", float("nan"))])])
    with pytest.raises(ValueError, match="query 'q2', document 'd8': score nan is not finite"):
        evaluate_run(nan, TOY_QRELS)
    dup = pa.concat_tables([TOY_RUN, _run([("q1", "d1", 0.1)])])
    with pytest.raises(ValueError, match="query 'q1' lists document 'd1' more than once"):
        evaluate_run(dup, TOY_QRELS)


def test_cli(tmp_path, capsys):
    write_table(TOY_RUN, tmp_path / "a.parquet", RUN)
    write_trec_run(TOY_RUN.filter(pa.compute.equal(TOY_RUN.column("query_id"), "q1")), tmp_path / "b.trec")
    (tmp_path / "qrels.txt").write_text(
        "".join(f"{q} 0 {d} {r}\n" for q, d, r in zip(*TOY_QRELS.to_pydict().values()))
    )
    base = ["evaluate", "--run", str(tmp_path / "a.parquet"), "--qrels", str(tmp_path / "qrels.txt")]

    assert cli_main([*base, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # exactly one JSON object
    assert printed == pytest.approx(evaluate_run(TOY_RUN, TOY_QRELS).aggregate)

    args = [*base, "--metrics", "AP,nDCG@10", "--baseline", str(tmp_path / "b.trec")]
    args += ["--out", str(tmp_path / "m.json"), "--per-query-out", str(tmp_path / "pq.json")]
    assert cli_main(args) == 0
    table = capsys.readouterr().out
    assert "p-value" in table and "a.parquet" in table and "b.trec" in table
    assert str(tmp_path) not in table  # rows are labelled by file name when the names differ
    assert "binary measures at grade" not in table  # the default grade 1 needs no note
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["metrics"]["AP"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert saved["baseline_metrics"]["AP"] == pytest.approx(0.5 / 2)
    assert saved["p_values"]["AP"] == pytest.approx(ttest_rel([0.5, 1 / 3], [0.5, 0.0]).pvalue)
    assert saved["p_values"]["nDCG@10"] == pytest.approx(
        ttest_rel([0.5672, 0.5], [0.5672, 0.0]).pvalue, abs=1e-3
    )
    loaded = EvalResult.load(tmp_path / "pq.json")
    assert loaded.per_query["q2"]["AP"] == pytest.approx(1 / 3)

    assert cli_main([*base, "--metrics", "MAP@1000,bogus"]) == 1
    assert "unknown measure 'bogus'" in capsys.readouterr().err


def test_cli_labels_runs_of_the_same_file_name_by_path_and_names_the_grade(tmp_path, capsys):
    for folder in ("dense", "bm25"):
        (tmp_path / folder).mkdir()
        write_trec_run(TOY_RUN, tmp_path / folder / "run.trec")
    (tmp_path / "qrels.txt").write_text(
        "".join(f"{q} 0 {d} {r}\n" for q, d, r in zip(*TOY_QRELS.to_pydict().values()))
    )
    args = ["evaluate", "--run", str(tmp_path / "dense" / "run.trec"), "--qrels", str(tmp_path / "qrels.txt")]
    args += ["--baseline", str(tmp_path / "bm25" / "run.trec"), "--relevance-level", "2"]
    assert cli_main(args) == 0
    table = capsys.readouterr().out
    assert str(tmp_path / "dense" / "run.trec") in table and str(tmp_path / "bm25" / "run.trec") in table
    assert "binary measures at grade >= 2" in table


def test_format_table():
    text = format_table({"a": {"m": 0.5, "n": 0.25}, "b": {"m": 0.125}}, p_values={"m": 0.01, "n": 1e-9})
    lines = text.splitlines()
    assert lines[0].split() == ["run", "m", "n"]
    assert lines[2].split() == ["a", "0.5000", "0.2500"]
    assert lines[3].split() == ["b", "0.1250", "-"]
    assert lines[4].split() == ["p-value", "0.0100", "1.0e-09"]


def test_metrics_and_per_query_files_are_written_together_or_not_at_all(tmp_path, capsys, monkeypatch):
    write_table(TOY_RUN, tmp_path / "a.parquet", RUN)
    write_table(TOY_QRELS, tmp_path / "qrels.parquet", QRELS)
    (tmp_path / "file").write_text("not a folder")
    base = ["evaluate", "--run", str(tmp_path / "a.parquet"), "--qrels", str(tmp_path / "qrels.parquet")]
    before = sorted(tmp_path.iterdir())
    # an unwritable per-query file fails before the evaluation and leaves no metrics file
    monkeypatch.setattr("lead_core.evaluate.stage.evaluate_run", lambda *a, **k: pytest.fail("evaluated"))
    args = ["--out", str(tmp_path / "m.json"), "--per-query-out", str(tmp_path / "file" / "pq.json")]
    assert cli_main([*base, *args]) == 1
    assert f"{tmp_path / 'file' / 'pq.json'}: cannot write here" in capsys.readouterr().err
    monkeypatch.undo()
    # a failure while writing the second leaves neither
    monkeypatch.setattr(EvalResult, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "disk full")))
    with pytest.raises(OSError, match="disk full"):
        cli_main([*base, "--out", str(tmp_path / "m.json"), "--per-query-out", str(tmp_path / "pq.json")])
    assert sorted(tmp_path.iterdir()) == before
