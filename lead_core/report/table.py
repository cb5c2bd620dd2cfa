"""The paper's results table: rows are methods, columns measures, p-values against a baseline.

Significance follows the paper (§4.2.1): a two-sided paired t-test over queries, significant at
p ≤ 0.01. Several results under one name are seeds: per query the values are averaged over the
seeds before the test, and the table shows the mean ± standard deviation of the seeds' means.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lead_core.data.schema import SchemaError
from lead_core.evaluate import EvalResult, paired_ttest

# How the paper names the measures (ir_measures' RR@10 is MRR@10).
DISPLAY_NAMES = {"RR@10": "MRR@10"}
BETTER, WORSE = "▲", "▼"


@dataclass
class Row:
    name: str
    mean: dict[str, float]  # measure -> mean over seeds
    std: dict[str, float]  # measure -> std over seeds (0 with one seed)
    p_values: dict[str, float]  # measure -> p vs the baseline (empty for the baseline itself)
    num_seeds: int
    marks: dict[str, str] = field(default_factory=dict)  # measure -> BETTER / WORSE / ""


@dataclass
class Table:
    rows: list[Row]
    measures: list[str]
    baseline: str | None
    alpha: float
    num_queries: int


def mean_over_seeds(results: Sequence[EvalResult]) -> EvalResult:
    """One EvalResult whose per-query values are the mean over `results` (same queries each)."""
    if not results:
        raise SchemaError("no results to combine")
    first = results[0]
    for other in results[1:]:
        if other.per_query.keys() != first.per_query.keys():
            raise SchemaError("seeds of one method cover different queries; evaluate them on the same qrels")
    names = list(first.aggregate)
    per_query = {
        q: {m: float(np.mean([r.per_query[q][m] for r in results])) for m in names} for q in first.per_query
    }
    aggregate = {m: float(np.mean([r.aggregate[m] for r in results])) for m in names}
    return EvalResult(aggregate, per_query, dict(first.measures), first.relevance_level)


def build_table(
    results: Mapping[str, Sequence[EvalResult]],
    measures: Sequence[str],
    baseline: str | None = "RD",
    alpha: float = 0.01,
) -> Table:
    """Rows in the order of `results` (name -> one EvalResult per seed); p-values vs `baseline`.

    A missing baseline gives a table without p-values (a subset run may lack it); a measure that
    some result lacks raises ValueError naming it.
    """
    combined = {}
    for name, seeds in results.items():
        for r in seeds:
            missing = [m for m in measures if m not in r.aggregate]
            if missing:
                raise SchemaError(f"{name}: no values for {missing} (has {sorted(r.aggregate)})")
        combined[name] = mean_over_seeds(seeds)
    base = combined.get(baseline) if baseline else None
    rows = []
    for name, seeds in results.items():
        result = combined[name]
        mean = {m: float(np.mean([r.aggregate[m] for r in seeds])) for m in measures}
        std = {m: float(np.std([r.aggregate[m] for r in seeds])) for m in measures}
        p_values: dict[str, float] = {}
        marks: dict[str, str] = {}
        if base is not None and name != baseline:
            tested = paired_ttest(result, base)
            for m in measures:
                p = tested[m]
                p_values[m] = p
                if not math.isnan(p) and p <= alpha:
                    marks[m] = BETTER if result.aggregate[m] > base.aggregate[m] else WORSE
        rows.append(Row(name, mean, std, p_values, len(seeds), marks))
    num_queries = next(iter(combined.values())).num_queries if combined else 0
    return Table(rows, list(measures), baseline if base is not None else None, alpha, num_queries)


def _value(row: Row, m: str, digits: int) -> str:
    text = f"{row.mean[m]:.{digits}f}"
    if row.num_seeds > 1:
        text += f" ± {row.std[m]:.{digits}f}"
    return text + row.marks.get(m, "")


def _p(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "n/a"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _header(table: Table) -> list[str]:
    header = ["Method"]
    for m in table.measures:
        header.append(DISPLAY_NAMES.get(m, m))
        if table.baseline:
            header.append("p")
    return header


def _cells(table: Table, row: Row, digits: int) -> list[str]:
    cells = [row.name]
    for m in table.measures:
        cells.append(_value(row, m, digits))
        if table.baseline:
            cells.append("–" if row.name == table.baseline else _p(row.p_values.get(m)))
    return cells


def _legend(table: Table) -> str:
    seeds = max((r.num_seeds for r in table.rows), default=1)
    parts = [f"{table.num_queries} queries"]
    if seeds > 1:
        parts.append(f"mean ± std over {seeds} seeds (p-values on the per-query means over seeds)")
    if table.baseline:
        parts.append(
            f"p: two-sided paired t-test vs {table.baseline}; {BETTER}/{WORSE}: significantly better/worse "
            f"than {table.baseline} at p ≤ {table.alpha:g}"
        )
    return "; ".join(parts) + "."


def to_markdown(table: Table, digits: int = 4, title: str | None = None) -> str:
    header = _header(table)
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_cells(table, row, digits)) + " |")
    lines += ["", _legend(table), ""]
    return "\n".join(lines)


def to_html(table: Table, digits: int = 4, title: str | None = None) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in _header(table))
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _cells(table, row, digits)) + "</tr>"
        for row in table.rows
    )
    heading = f"<h3>{esc(title)}</h3>" if title else ""
    style = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{style}</style></head><body>{heading}'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>{esc(_legend(table))}</p></body></html>\n"
    )
