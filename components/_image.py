"""The pinned images of the pipeline's components: the tag is the lead_core version.

A new lead_core version therefore never hits a cache entry made by an older one (the image is part
of every cache key, on a cluster and in kfp.local). `LEAD_IMAGE_REGISTRY` overrides the registry
when the components are compiled; images/build.py builds and pushes exactly these references.

This module imports nothing but lead_core's version, so images/build.py can load it without kfp.
"""

from __future__ import annotations

import os
from typing import Literal

from lead_core import __version__

DEFAULT_REGISTRY = "ghcr.io/lead-project"
REGISTRY = os.environ.get("LEAD_IMAGE_REGISTRY") or DEFAULT_REGISTRY
IMAGE_NAME = "lead-core"

Variant = Literal["cpu", "cuda"]
VARIANTS: tuple[Variant, ...] = ("cpu", "cuda")


def image_ref(variant: Variant, registry: str = REGISTRY) -> str:
    """`<registry>/lead-core:<version>` (cpu) or `<registry>/lead-core:<version>-cuda`."""
    if variant not in VARIANTS:
        raise ValueError(f"image variant must be one of {VARIANTS}, got {variant!r}")
    suffix = "" if variant == "cpu" else f"-{variant}"
    return f"{registry.rstrip('/')}/{IMAGE_NAME}:{__version__}{suffix}"


BASE_IMAGE_CPU = image_ref("cpu")
BASE_IMAGE_CUDA = image_ref("cuda")
