"""Component: materialise an initial backbone (folder, hub id, package, tiny or truncated) (lead_core.backbone)."""

from kfp import dsl
from kfp.dsl import Model, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def backbone(source: str, source_identity: str, model: Output[Model]):
    """Write the Hugging Face backbone named by `source` to the model folder.

    Args:
        source: a folder or hub id, package:<module>, tiny:<bert|mpnet>:<layers>:<hidden>[:<seed>], or truncate:<layers>:<source>.
        source_identity: the source's identity at run time (the identity component): puts its contents
            into this task's cache key; recorded in the output's metadata.
        model: output backbone folder (config, safetensors weights, tokenizer).
    """
    from lead_core.backbone import Config, run

    model.metadata["source_identity"] = source_identity
    run(Config(source=source, out=model.path))
