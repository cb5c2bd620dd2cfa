"""TREC measures of a run against qrels (ir_measures over pytrec_eval), and paired t-tests.

Conventions, all trec_eval's:
- A run is ordered by score descending, ties by doc id descending (trec_eval ignores the rank
  column). Cut-off measures (RR@10, nDCG@10, AP@1000, R@1000) look at that order's top k.
- Every query in the qrels counts; a query the run lacks scores 0 (`trec_eval -c`). Run queries
  that the qrels do not name are ignored.
- Binary measures (RR, AP, R, P, ...) count a document relevant when its grade is at least the
  relevance level (`trec_eval -l`; TREC DL passage uses 2); nDCG uses the raw grades.

RR@k goes through pytrec_eval's `recip_rank` on the run cut at k in trec_eval's order, not through
ir_measures' MS MARCO provider, whose tie order (doc id ascending) differs from trec_eval's.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ir_measures
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ir_measures.measures.base import Measure

from lead_core.artifacts import atomic_path
from lead_core.config import ConfigError
from lead_core.data.schema import QRELS, RUN, SchemaError, validate_table

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ["RR@10", "AP@1000", "R@1000", "nDCG@10"]
_EXAMPLES = "nDCG@10, RR@10, AP@1000, R@100, P@5, AP"


@dataclass
class EvalResult:
    """Measure values of one run: the mean over the qrels' queries, and each query's value.

    `measures` maps each requested name (the keys of `aggregate`) to the ir_measures measure that
    computed it, e.g. "AP@1000" -> "AP(rel=2)@1000" at relevance level 2.
    """

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]  # query id -> measure name -> value
    measures: dict[str, str] = field(default_factory=dict)
    relevance_level: int = 1

    @property
    def num_queries(self) -> int:
        return len(self.per_query)

    def to_dict(self, per_query: bool = True) -> dict:
        out: dict = {
            "metrics": self.aggregate,
            "measures": self.measures,
            "relevance_level": self.relevance_level,
            "num_queries": self.num_queries,
        }
        if per_query:
            out["per_query"] = self.per_query
        return out

    def save(self, path: str | Path, per_query: bool = True) -> Path:
        """Write the result as JSON, atomically (with per-query values, `load` reads it back)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(per_query), indent=1, sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        path = Path(path)
        data = json.loads(path.read_text())
        if "per_query" not in data:
            raise SchemaError(f"{path}: no per-query values (write it with per-query output)")
        return cls(
            aggregate=data["metrics"],
            per_query=data["per_query"],
            measures=data.get("measures", {}),
            relevance_level=data.get("relevance_level", 1),
        )


def resolve_measures(names: Sequence[str], relevance_level: int = 1) -> dict[str, Measure]:
    """Parse ir_measures names; binary measures without an explicit `rel` get `relevance_level`.

    Raises ConfigError naming the first unknown or unsupported measure.
    """
    if not names:
        raise ConfigError("no measures given")
    if relevance_level < 1:
        raise ConfigError(f"relevance_level must be >= 1, got {relevance_level}")
    out: dict[str, Measure] = {}
    for name in names:
        name = name.strip()
        try:
            measure = ir_measures.parse_measure(name)
            measure.validate_params()
        except Exception as err:  # ir_measures raises NameError, ValueError, SyntaxError, KeyError...
            raise ConfigError(
                f"unknown measure {name!r} ({type(err).__name__}: {err}); use an ir_measures name such as {_EXAMPLES}"
            ) from None
        if relevance_level != 1 and "rel" in measure.SUPPORTED_PARAMS and "rel" not in measure.params:
            measure = measure(rel=relevance_level)
        if not any(p.supports(measure) and p.is_available() for p in ir_measures.DefaultPipeline.providers):
            raise ConfigError(f"measure {name!r} ({measure}) has no available ir_measures provider")
        out[name] = measure
    return out


def qrels_dict(qrels: pa.Table) -> dict[str, dict[str, int]]:
    """{query id: {doc id: grade}}; a (query, doc) pair judged twice is an error."""
    qrels = validate_table(qrels, QRELS, where="qrels")
    out: dict[str, dict[str, int]] = {}
    for q, d, r in zip(
        qrels.column("query_id").to_pylist(),
        qrels.column("doc_id").to_pylist(),
        qrels.column("relevance").to_pylist(),
    ):
        judged = out.setdefault(q, {})
        if d in judged:
            raise SchemaError(f"qrels: query {q!r} judges document {d!r} twice")
        judged[d] = r
    return out


def _trec_order(run: pa.Table) -> tuple[list[str], np.ndarray, pa.Table]:
    """The run sorted as trec_eval reads it; returns (query ids, start offset of each, sorted run)."""
    run = run.sort_by([("query_id", "ascending"), ("score", "descending"), ("doc_id", "descending")])
    qids = run.column("query_id").combine_chunks()
    if len(qids) == 0:
        return [], np.zeros(1, np.int64), run
    changed = pc.not_equal(qids[1:], qids[:-1])
    inner = np.asarray(pc.indices_nonzero(changed), dtype=np.int64) + 1
    starts = np.concatenate([np.zeros(1, np.int64), inner, np.array([len(qids)], np.int64)])
    query_ids = qids.take(pa.array(starts[:-1])).to_pylist()
    return query_ids, starts, run


def run_dicts(run: pa.Table, cutoffs: Sequence[int] = (), where: str = "run") -> tuple[dict, dict[int, dict]]:
    """The run as {query id: {doc id: score}}, and the same cut at each of `cutoffs` in trec_eval order.

    A (query, doc) pair listed twice is an error (trec_eval would count it once at an
    unpredictable rank).
    """
    query_ids, starts, run = _trec_order(run)
    docs = run.column("doc_id").to_pylist()
    scores = run.column("score").to_numpy().astype(np.float64).tolist()
    full: dict[str, dict[str, float]] = {}
    cut: dict[int, dict[str, dict[str, float]]] = {k: {} for k in cutoffs}
    for q, a, b in zip(query_ids, starts[:-1].tolist(), starts[1:].tolist()):
        ranked = dict(zip(docs[a:b], scores[a:b]))
        if len(ranked) != b - a:
            seen: set[str] = set()
            dup = next(d for d in docs[a:b] if d in seen or seen.add(d))
            raise SchemaError(f"{where}: query {q!r} lists document {dup!r} more than once")
        full[q] = ranked
        for k in cutoffs:
            cut[k][q] = ranked if b - a <= k else dict(zip(docs[a : a + k], scores[a : a + k]))
    return full, cut


def _check_overlap(run_qids: set[str], qrels: Mapping[str, dict], where: str = "run") -> None:
    common = run_qids & qrels.keys()
    if not common:
        raise SchemaError(
            f"{where}: the run names none of the {len(qrels)} qrels queries "
            f"(run queries e.g. {sorted(run_qids)[:3]}, qrels queries e.g. {sorted(qrels)[:3]}); "
            "wrong qrels file or split?"
        )
    missing = len(qrels.keys() - run_qids)
    if missing:
        logger.warning("%d of %d qrels queries have no results in the run; they score 0", missing, len(qrels))
    extra = len(run_qids - qrels.keys())
    if extra:
        logger.info("%d run queries are not in the qrels and are ignored", extra)


def evaluate_run(
    run: pa.Table,
    qrels: pa.Table | Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    relevance_level: int = 1,
    where: str = "run",
) -> EvalResult:
    """Evaluate a RUN table against a QRELS table (or a qrels dict from `qrels_dict`).

    Values equal trec_eval's (`-c`, `-l relevance_level`, `-M` for cut-offs); see the module doc.
    `where` (the run's file) begins the message of an error about the run.
    """
    measures = resolve_measures(metrics, relevance_level)
    qrels_d = qrels if isinstance(qrels, Mapping) else qrels_dict(qrels)
    run = validate_table(run, RUN, where=where)
    if run.num_rows == 0:
        raise SchemaError(f"{where}: the run is empty")
    bad_score = pc.invert(pc.is_finite(run.column("score")))
    if pc.any(bad_score).as_py():
        row = run.filter(bad_score).slice(0, 1).to_pylist()[0]
        raise SchemaError(
            f"{where}: query {row['query_id']!r}, document {row['doc_id']!r}: score {row['score']} is not finite"
        )

    # RR@k: recip_rank over the run cut at k (see module doc); everything else as ir_measures has it.
    rr_cut: dict[Measure, tuple[int, Measure]] = {}
    for m in measures.values():
        if m.NAME == "RR" and "cutoff" in m.params:
            params = {p: v for p, v in m.params.items() if p != "cutoff"}
            rr_cut[m] = (m["cutoff"], ir_measures.measures.RR(**params))
    full, cut = run_dicts(run, sorted({k for k, _ in rr_cut.values()}), where)
    _check_overlap(set(full), qrels_d, where)

    values: dict[Measure, dict[str, float]] = {}
    plain = [m for m in set(measures.values()) if m not in rr_cut]
    if plain:
        pte = [m for m in plain if ir_measures.pytrec_eval.supports(m)]
        other = [m for m in plain if m not in pte]
        for provider, group in ((ir_measures.pytrec_eval, pte), (ir_measures.DefaultPipeline, other)):
            if group:
                for metric in provider.evaluator(group, qrels_d).iter_calc(full):
                    values.setdefault(metric.measure, {})[metric.query_id] = float(metric.value)
    for k in sorted({k for k, _ in rr_cut.values()}):
        group = {uncut: m for m, (kk, uncut) in rr_cut.items() if kk == k}
        for metric in ir_measures.pytrec_eval.evaluator(list(group), qrels_d).iter_calc(cut[k]):
            values.setdefault(group[metric.measure], {})[metric.query_id] = float(metric.value)

    qids = sorted(qrels_d)
    per_query = {q: {name: values.get(m, {}).get(q, 0.0) for name, m in measures.items()} for q in qids}
    aggregate = {}
    for name, m in measures.items():
        agg = m.aggregator()
        for q in qids:
            agg.add(per_query[q][name])
        aggregate[name] = float(agg.result())
    return EvalResult(
        aggregate=aggregate,
        per_query=per_query,
        measures={name: str(m) for name, m in measures.items()},
        relevance_level=relevance_level,
    )


def paired_ttest(a: EvalResult, b: EvalResult) -> dict[str, float]:
    """Two-sided paired t-test p-value per measure (scipy.stats.ttest_rel) over the qrels' queries.

    Both results must cover the same queries (evaluate both runs against the same qrels). A query
    missing from a run already scores 0 there. When the two runs agree on every query the
    p-value is NaN (the test is undefined).
    """
    from scipy.stats import ttest_rel

    if a.per_query.keys() != b.per_query.keys():
        only_a = sorted(a.per_query.keys() - b.per_query.keys())[:3]
        only_b = sorted(b.per_query.keys() - a.per_query.keys())[:3]
        raise SchemaError(
            f"paired t-test needs the same queries in both results (only in the first e.g. {only_a}, "
            f"only in the second e.g. {only_b}); evaluate both runs against the same qrels"
        )
    names = [m for m in a.aggregate if m in b.aggregate]
    if not names:
        raise SchemaError(f"no measure in common: {sorted(a.aggregate)} vs {sorted(b.aggregate)}")
    qids = sorted(a.per_query)
    out = {}
    for name in names:
        x = np.array([a.per_query[q][name] for q in qids])
        y = np.array([b.per_query[q][name] for q in qids])
        out[name] = math.nan if np.array_equal(x, y) else float(ttest_rel(x, y).pvalue)
    return out


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    p_values: Mapping[str, float] | None = None,
    digits: int = 4,
    title: str = "run",
) -> str:
    """A plain-text table: one row per named result, one column per measure (union over rows).

    With `p_values` (measure -> p), a last row gives the paired t-test p-value of each measure.
    """
    columns: list[str] = []
    for values in rows.values():
        columns.extend(m for m in values if m not in columns)
    body = [[name] + [_fmt(values.get(m), digits) for m in columns] for name, values in rows.items()]
    if p_values is not None:
        body.append(["p-value"] + [_fmt(p_values.get(m), digits, p_value=True) for m in columns])
    header = [title] + columns
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None, digits: int, p_value: bool = False) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if p_value and 0 < value < 10**-digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"
