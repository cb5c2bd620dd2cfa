"""Component: TREC measures of a run, optionally with paired t-tests against a baseline (lead_core.evaluate)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def evaluate(
    run: Input[Dataset],
    data: Input[Dataset],
    name: str,
    measures: list,
    relevance_level: int,
    metrics: Output[Metrics],
    table: Output[Markdown],
    baseline: Input[Dataset] = None,
):
    """Evaluate the run against the split's qrels; log one metric per measure and a table.

    Args:
        run: run folder holding run.parquet.
        data: ingested split holding qrels.parquet.
        name: the system's name in the table (e.g. student).
        measures: ir_measures names, e.g. nDCG@10, RR@10, R@100.
        relevance_level: lowest grade that counts as relevant for binary measures.
        metrics: output metrics: one value per measure; the file holds the evaluation JSON.
        table: output Markdown table of the measures (and p-values against the baseline).
        baseline: optional run folder to compare with (paired t-test per measure).
    """
    from lead_core.evaluate import Config, format_table
    from lead_core.evaluate import run as evaluate_run

    summary = evaluate_run(
        Config(
            run=run.path + "/run.parquet",
            qrels=data.path + "/qrels.parquet",
            metrics=measures,
            relevance_level=relevance_level,
            baseline=baseline.path + "/run.parquet" if baseline else None,
            out=metrics.path,
        )
    )
    for measure, value in summary["metrics"].items():
        metrics.log_metric(measure, value)
    rows = {name: summary["metrics"], **({"baseline": summary["baseline_metrics"]} if baseline else {})}
    with open(table.path, "w") as f:
        f.write("```\n" + format_table(rows, summary.get("p_values"), title="system") + "\n```\n")
