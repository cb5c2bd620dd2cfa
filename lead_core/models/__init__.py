"""Retrieval models with per-layer scores (paper §3.2): DE, CB and CE over any HF encoder."""

from lead_core.models.base import GatherFn, LayerScores, ModelConfig, RetrievalModel
from lead_core.models.colbert import ColBERT
from lead_core.models.cross_encoder import CrossEncoder
from lead_core.models.dual_encoder import DualEncoder
from lead_core.models.encoder import BackboneError
from lead_core.models.loading import ModelLoadError, build_model, load_model, read_model_config
from lead_core.models.tiny import build_tiny_backbone, truncate_backbone

__all__ = [
    "BackboneError",
    "ColBERT",
    "CrossEncoder",
    "DualEncoder",
    "GatherFn",
    "LayerScores",
    "ModelConfig",
    "ModelLoadError",
    "RetrievalModel",
    "build_model",
    "build_tiny_backbone",
    "load_model",
    "read_model_config",
    "truncate_backbone",
]
