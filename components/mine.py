"""Component: hard negatives mined from a run into training groups (lead_core.mine)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def mine(
    run: Input[Dataset],
    data: Input[Dataset],
    depth: int,
    skip: int,
    num_negatives: int,
    seed: int,
    groups: Output[Dataset],
):
    """Mine each query's negatives from the run's top ranks, never a judged positive.

    Args:
        run: run folder holding run.parquet (e.g. the phase-1 DE's top-k for the training queries).
        data: ingested split holding qrels.parquet of the same queries.
        depth: mine from the top `depth` ranks of each query.
        skip: leave out the first `skip` ranks.
        num_negatives: negatives sampled per query.
        seed: seed of the per-query sampling.
        groups: output folder holding groups.parquet.
    """
    from lead_core.mine import Config
    from lead_core.mine import run as mine_run

    mine_run(
        Config(
            run=run.path + "/run.parquet",
            qrels=data.path + "/qrels.parquet",
            out_groups=groups.path + "/groups.parquet",
            depth=depth,
            skip=skip,
            num_negatives=num_negatives,
            seed=seed,
        )
    )
