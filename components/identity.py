"""Component: the identity of a dataset or backbone source, resolved at run time (lead_core.identity).

Placed with caching off, its output is an input of the stage that reads the source (ingest,
backbone): that stage's cache key then follows the source's contents, not only its URI.
"""

from kfp import dsl

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def identity(source: str, kind: str) -> str:
    """Resolve what `source` holds now: a short digest of its contents (local) or server metadata (remote).

    Args:
        source: a dataset source (as ingest's) or a backbone source (as backbone's).
        kind: dataset or backbone.

    Returns:
        The identity digest (32 hex characters); the full description is printed to the task log.
    """
    from lead_core.identity import Config, run

    return run(Config(source=source, kind=kind))["digest"]
