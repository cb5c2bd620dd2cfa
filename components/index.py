"""Component: an exact inner-product faiss index over embeddings (lead_core.index)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def index(embeddings: Input[Dataset], index: Output[Dataset]):
    """Build a faiss IndexFlatIP over the corpus embeddings.

    Args:
        embeddings: embeddings directory written by the encode component.
        index: output index directory (index.faiss, ids.parquet, meta.json).
    """
    from lead_core.index import Config, run

    run(Config(embeddings=embeddings.path, out=index.path))
