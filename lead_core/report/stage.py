"""The `lead report` stage: Config and run."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lead_core.artifacts import atomic_outputs, check_writable
from lead_core.config import ConfigError, to_dict
from lead_core.data.trec import read_qrels, read_run
from lead_core.evaluate import EvalResult, evaluate_run, qrels_dict
from lead_core.report.logs import read_step_log
from lead_core.report.plots import plot_training
from lead_core.report.table import build_table, to_html, to_markdown
from lead_core.tracking import stage_run

logger = logging.getLogger(__name__)


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class Config:
    out_markdown: str = _help("Markdown file to write the table to")
    metrics: list[str] = _help(
        "EvalResult JSON files with per-query values (`lead evaluate --per-query-out`), or directories "
        "of *.json files; results that share a name are seeds of one method",
        default_factory=list,
    )
    runs: list[str] = _help(
        "runs (RUN Parquet or TREC) to evaluate against --qrels; they follow the metrics files",
        default_factory=list,
    )
    qrels: str | None = _help("qrels of --runs (QRELS Parquet or TREC qrels)", default=None)
    relevance_level: int = _help(
        "lowest grade relevant for binary measures when evaluating --runs", default=1
    )
    names: list[str] = _help(
        "method name of each metrics file, then of each run, in order (default: the file name)",
        default_factory=list,
    )
    baseline: str = _help("method the p-values compare against", default="RD")
    measures: list[str] = _help(
        "measures (columns), ir_measures names as in the metrics files",
        default_factory=lambda: ["nDCG@10", "RR@10", "R@100"],
    )
    alpha: float = _help("significance level of the marks (the paper: 0.01)", default=0.01)
    title: str | None = _help("heading above the table", default=None)
    out_html: str | None = _help("also write the table as HTML here", default=None)
    logs: list[str] = _help("JSONL training step logs (loss curves, layer weights)", default_factory=list)
    log_names: list[str] = _help(
        "run name of each log, in order (default: the log's folder name)", default_factory=list
    )
    out_plots: str | None = _help("directory for the PNG plots of the logs", default=None)


def _metric_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise FileNotFoundError(f"{path}: a directory without *.json metrics files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such metrics file or directory")
    return files


def load_results(
    metrics: list[str],
    names: list[str] = (),
    runs: list[str] = (),
    qrels: str | None = None,
    measures: list[str] = ("nDCG@10", "RR@10", "R@100"),
    relevance_level: int = 1,
) -> dict[str, list[EvalResult]]:
    """name -> the EvalResults under that name (one per seed), in first-seen order.

    Metrics files come first, then runs (evaluated against `qrels`); `names` names them in that
    order (default: the file name up to its first dot)."""
    files = _metric_files(metrics) if metrics else []
    if runs and qrels is None:
        raise ConfigError("report: --runs need --qrels")
    sources = [*files, *(Path(r) for r in runs)]
    if not sources:
        raise ConfigError("report: give --metrics or --runs")
    if names and len(names) != len(sources):
        raise ConfigError(f"report: {len(names)} --names for {len(sources)} metrics files and runs")
    qrels_d = qrels_dict(read_qrels(qrels)) if runs else None
    out: dict[str, list[EvalResult]] = {}
    for i, path in enumerate(sources):
        if i < len(files):
            result = EvalResult.load(path)
        else:
            result = evaluate_run(read_run(path), qrels_d, list(measures), relevance_level)
        out.setdefault(names[i] if names else path.name.split(".")[0], []).append(result)
    return out


def run(config: Config) -> dict:
    """Write the table (Markdown, optionally HTML) and the plots; return the rows and paths."""
    if config.log_names and len(config.log_names) != len(config.logs):
        raise ConfigError(f"report: {len(config.log_names)} --log-names for {len(config.logs)} --logs")
    plot_probe = Path(config.out_plots) / "loss_curves.png" if config.logs and config.out_plots else None
    check_writable(config.out_markdown, config.out_html, plot_probe)
    results = load_results(
        config.metrics, config.names, config.runs, config.qrels, config.measures, config.relevance_level
    )
    if config.baseline not in results:
        logger.warning("report: baseline %r is not among %s; no p-values", config.baseline, list(results))
    table = build_table(results, config.measures, config.baseline, config.alpha)
    written = [Path(p) for p in (config.out_markdown, config.out_html) if p]
    plots: list[Path] = []
    # Plots are drawn first (their names depend on the logs), then committed with the tables.
    with tempfile.TemporaryDirectory(prefix="lead-report-") as drawn:
        if config.logs and config.out_plots:
            logs = {
                (config.log_names[i] if config.log_names else Path(p).parent.name): read_step_log(p)
                for i, p in enumerate(config.logs)
            }
            plots = [Path(config.out_plots) / p.name for p in plot_training(logs, drawn)]
        with atomic_outputs(config.out_markdown, config.out_html, *plots) as (markdown, html, *plot_temps):
            markdown.write_text(to_markdown(table, title=config.title))
            if html is not None:
                html.write_text(to_html(table, title=config.title))
            for plot, temp in zip(plots, plot_temps):
                shutil.copyfile(Path(drawn) / plot.name, temp)
    with stage_run("report", to_dict(config)) as tracker:
        for path in written + plots:
            tracker.log_artifact(path, "report")
    print(to_markdown(table, title=config.title))
    return {
        "rows": {
            r.name: {"mean": r.mean, "std": r.std, "p_values": r.p_values, "seeds": r.num_seeds}
            for r in table.rows
        },
        "baseline": table.baseline,
        # name -> each of its runs' (seeds') mean measures, in input order
        "per_run": {name: [r.aggregate for r in runs] for name, runs in results.items()},
        "markdown": to_markdown(table, title=config.title),
        "written": [str(p) for p in written],
        "plots": [str(p) for p in plots],
    }
