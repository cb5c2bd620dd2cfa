"""`lead report`: the paper-layout table over many evaluated runs, and training plots.

Reads EvalResult JSON files (with per-query values: `lead evaluate --per-query-out`), computes
paired t-tests against a baseline method, writes the table as Markdown and HTML, plots loss curves
and LEAD's layer weights from JSONL step logs (lead_core.report.logs.StepLogWriter), and logs all of
it as tracking artifacts.
"""

from lead_core.report.logs import StepLogWriter, read_step_log, student_layer_weights
from lead_core.report.methods import CORE, Method, methods_for
from lead_core.report.plots import plot_training
from lead_core.report.stage import Config, load_results, run
from lead_core.report.table import (
    BETTER,
    WORSE,
    Row,
    Table,
    build_table,
    mean_over_seeds,
    to_html,
    to_markdown,
)

__all__ = [
    "CORE",
    "Method",
    "methods_for",
    "BETTER",
    "WORSE",
    "Config",
    "Row",
    "StepLogWriter",
    "Table",
    "build_table",
    "load_results",
    "mean_over_seeds",
    "plot_training",
    "read_step_log",
    "run",
    "student_layer_weights",
    "to_html",
    "to_markdown",
]
