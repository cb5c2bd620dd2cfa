"""Retrieval models with per-layer scores (paper §3.2): DE, CB and CE over any HF encoder."""

from lead_core.models.base import GatherFn, LayerScores, ModelConfig, RetrievalModel
from lead_core.models.tiny import build_tiny_backbone, truncate_backbone

__all__ = [
    "GatherFn",
    "LayerScores",
    "ModelConfig",
    "RetrievalModel",
    "build_tiny_backbone",
    "truncate_backbone",
]
