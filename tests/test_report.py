"""lead_core.report: the paper-layout table from hand-made EvalResults, its files, and the plots."""

from __future__ import annotations

import json
import math
import os
import types

import numpy as np
import pytest
from scipy.stats import ttest_rel

from lead_core.evaluate import EvalResult
from lead_core.report import (
    BETTER,
    WORSE,
    Config,
    StepLogWriter,
    build_table,
    mean_over_seeds,
    read_step_log,
    run,
    student_layer_weights,
    to_html,
    to_markdown,
)

QIDS = [f"q{i}" for i in range(8)]


def _result(ndcg: list[float], rr: list[float]) -> EvalResult:
    per_query = {q: {"nDCG@10": n, "RR@10": r} for q, n, r in zip(QIDS, ndcg, rr)}
    return EvalResult({"nDCG@10": float(np.mean(ndcg)), "RR@10": float(np.mean(rr))}, per_query)


RD = _result([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])
# nDCG clearly above RD on every query (p tiny); RR a little above on one query (p large).
LEAD = _result([0.3, 0.41, 0.52, 0.6, 0.73, 0.8, 0.92, 1.0], [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
# Clearly below RD on nDCG.
BAD = _result([0.0, 0.01, 0.1, 0.2, 0.3, 0.41, 0.5, 0.6], [0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])


def _scipy_p(a: EvalResult, b: EvalResult, measure: str) -> float:
    return float(
        ttest_rel([a.per_query[q][measure] for q in QIDS], [b.per_query[q][measure] for q in QIDS]).pvalue
    )


def test_table_p_values_equal_scipy_and_marks_follow_the_papers_threshold():
    table = build_table({"RD": [RD], "LEAD": [LEAD], "Bad": [BAD]}, ["nDCG@10", "RR@10"], baseline="RD")
    rows = {r.name: r for r in table.rows}
    assert [r.name for r in table.rows] == ["RD", "LEAD", "Bad"]
    assert rows["RD"].p_values == {} and rows["RD"].marks == {}
    for name, result, m in (("LEAD", LEAD, "nDCG@10"), ("LEAD", LEAD, "RR@10"), ("Bad", BAD, "nDCG@10")):
        assert rows[name].p_values[m] == pytest.approx(_scipy_p(result, RD, m), rel=1e-12)
    assert rows["LEAD"].p_values["nDCG@10"] <= 0.01 and rows["LEAD"].marks["nDCG@10"] == BETTER
    assert rows["LEAD"].p_values["RR@10"] > 0.01 and "RR@10" not in rows["LEAD"].marks
    assert rows["Bad"].marks["nDCG@10"] == WORSE
    assert rows["Bad"].marks.get("RR@10") is None and math.isnan(rows["Bad"].p_values["RR@10"])  # identical
    assert rows["LEAD"].mean["nDCG@10"] == pytest.approx(
        np.mean([0.3, 0.41, 0.52, 0.6, 0.73, 0.8, 0.92, 1.0])
    )

    md = to_markdown(table, title="t")
    lines = md.splitlines()
    assert lines[2] == "| Method | nDCG@10 | p | MRR@10 | p |"  # the paper calls RR@10 MRR@10
    lead_line = next(line for line in lines if line.startswith("| LEAD |"))
    assert f"{LEAD.aggregate['nDCG@10']:.4f}{BETTER}" in lead_line
    assert next(line for line in lines if line.startswith("| RD |")).count("–") == 2
    assert "p ≤ 0.01" in md and "8 queries" in md
    html = to_html(table)
    assert html.count("<tr>") == 4 and f"{LEAD.aggregate['nDCG@10']:.4f}{BETTER}" in html


def test_seeds_average_per_query_and_show_spread():
    other = _result([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], [1.0] * 8)
    combined = mean_over_seeds([LEAD, other])
    assert combined.per_query["q0"]["nDCG@10"] == pytest.approx(0.25)
    table = build_table({"RD": [RD], "LEAD": [LEAD, other]}, ["nDCG@10"], baseline="RD")
    lead = table.rows[1]
    assert lead.num_seeds == 2
    assert lead.std["nDCG@10"] == pytest.approx(
        np.std([LEAD.aggregate["nDCG@10"], other.aggregate["nDCG@10"]])
    )
    expected = ttest_rel(
        [combined.per_query[q]["nDCG@10"] for q in QIDS], [RD.per_query[q]["nDCG@10"] for q in QIDS]
    )
    assert lead.p_values["nDCG@10"] == pytest.approx(float(expected.pvalue))
    assert " ± " in to_markdown(table)


def test_missing_baseline_gives_no_p_values_and_missing_measure_fails():
    table = build_table({"LEAD": [LEAD]}, ["nDCG@10"], baseline="RD")
    assert table.baseline is None and "| p |" not in to_markdown(table)
    with pytest.raises(ValueError, match="R@100"):
        build_table({"LEAD": [LEAD]}, ["R@100"], baseline="RD")


def _log(path, rows):
    writer = StepLogWriter(path)
    for step, metrics in rows:
        writer(types.SimpleNamespace(step=step, metrics=metrics, rank=0))
    writer(types.SimpleNamespace(step=99, metrics={"loss/total": 1.0}, rank=1))  # other ranks write nothing
    writer.close()


def test_run_writes_files_atomically_and_plots(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name, result in (("RD", RD), ("LEAD", LEAD)):
        result.save(metrics / f"{name}.json")
    lead_log = tmp_path / "lead" / "train_log.jsonl"
    _log(
        lead_log,
        [
            (
                1,
                {
                    "loss/total": 2.0,
                    "layer_weight/k0": 0.7,
                    "layers/student_k0": 2.0,
                    "layer_weight/k1": 0.3,
                    "layers/student_k1": 0.0,
                },
            ),
            (
                2,
                {
                    "loss/total": 1.5,
                    "layer_weight/k0": 0.6,
                    "layers/student_k0": 1.0,
                    "layer_weight/k1": 0.4,
                    "layers/student_k1": 2.0,
                },
            ),
        ],
    )
    rd_log = tmp_path / "rd" / "train_log.jsonl"
    _log(rd_log, [(1, {"loss/total": 3.0}), (2, {"loss/total": 2.5})])
    assert read_step_log(lead_log)[1]["step"] == 2 and len(read_step_log(lead_log)) == 2
    assert student_layer_weights(read_step_log(lead_log)) == {
        2: [(1, 0.7), (2, 0.4)],
        0: [(1, 0.3)],
        1: [(2, 0.6)],
    }

    out_md, out_html = tmp_path / "out" / "table.md", tmp_path / "out" / "table.html"
    out_md.parent.mkdir()
    out_md.write_text("stale")
    summary = run(
        Config(
            metrics=[str(metrics)],
            measures=["nDCG@10", "RR@10"],
            out_markdown=str(out_md),
            out_html=str(out_html),
            logs=[str(lead_log), str(rd_log)],
            out_plots=str(tmp_path / "plots"),
        )
    )
    assert set(os.listdir(out_md.parent)) == {"table.md", "table.html"}  # no temporary files left
    text = out_md.read_text()
    assert "stale" not in text and "| LEAD |" in text and "| RD |" in text
    assert summary["rows"]["LEAD"]["p_values"]["nDCG@10"] == pytest.approx(_scipy_p(LEAD, RD, "nDCG@10"))
    assert json.dumps(summary)  # plain data
    pytest.importorskip("matplotlib")
    written = sorted(p.rsplit("/", 1)[1] for p in summary["plots"])
    assert written == ["layer_weights-lead.png", "loss_curves.png"]
    for name in written:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_log_line_is_named(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "loss/total": 1.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"log\.jsonl: line 2: not a JSON object"):
        read_step_log(path)


def test_run_commits_table_html_and_plots_together_and_keeps_other_files(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name, result in (("RD", RD), ("LEAD", LEAD)):
        result.save(metrics / f"{name}.json")
    log = tmp_path / "rd" / "train_log.jsonl"
    _log(log, [(1, {"loss/total": 3.0}), (2, {"loss/total": 2.5})])
    out, plots = tmp_path / "out", tmp_path / "plots"
    out.mkdir()
    (out / "table.md").write_text("stale")
    (out / "file").write_text("not a folder")
    plots.mkdir()
    (plots / "notes.txt").write_text("mine")
    config = Config(
        metrics=[str(metrics)],
        measures=["nDCG@10", "RR@10"],
        out_markdown=str(out / "table.md"),
        out_html=str(out / "file" / "table.html"),
        logs=[str(log)],
        out_plots=str(plots),
    )
    with pytest.raises(ValueError, match=r"file/table\.html: cannot write here"):
        run(config)
    assert (out / "table.md").read_text() == "stale" and os.listdir(plots) == ["notes.txt"]

    config.out_html = str(out / "table.html")
    summary = run(config)
    assert "stale" not in (out / "table.md").read_text() and (out / "table.html").exists()
    assert (plots / "notes.txt").read_text() == "mine"  # the plots folder is not replaced wholesale
    pytest.importorskip("matplotlib")
    assert sorted(os.listdir(plots)) == ["loss_curves.png", "notes.txt"]
    assert summary["plots"] == [str(plots / "loss_curves.png")]
