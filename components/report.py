"""Component: the paper-layout table over many runs as a Markdown and an HTML visualization (lead_core.report)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def report(
    runs: Input[list[Dataset]],
    data: Input[Dataset],
    names: list,
    baseline: str,
    measures: list,
    relevance_level: int,
    title: str,
    table: Output[Markdown],
    html: Output[HTML],
):
    """Evaluate every run, test each against the baseline (paired t-test) and write the table.

    Args:
        runs: run folders holding run.parquet, one per method (e.g. collected from a ParallelFor).
        data: ingested evaluation split holding qrels.parquet.
        names: method name of each run, in the order of runs; equal names are seeds of one method.
        baseline: the method the p-values compare against (the paper: RD).
        measures: ir_measures names, e.g. nDCG@10, RR@10, R@100.
        relevance_level: lowest grade that counts as relevant for binary measures.
        title: heading above the table.
        table: output Markdown table (rows: methods; columns: measures and p-values).
        html: output HTML table.
    """
    from lead_core.report import Config, run

    run(
        Config(
            runs=[r.path + "/run.parquet" for r in runs],
            qrels=data.path + "/qrels.parquet",
            names=names,
            baseline=baseline,
            measures=measures,
            relevance_level=relevance_level,
            title=title,
            out_markdown=table.path,
            out_html=html.path,
        )
    )
