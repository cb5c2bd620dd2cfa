"""`lead backbone`: the initial backbone of a training run, materialised as a folder (see `stage`)."""

from lead_core.backbone.stage import Config, package_model_dir, prepare_backbone, resolve_folder, run

__all__ = ["Config", "package_model_dir", "prepare_backbone", "resolve_folder", "run"]
