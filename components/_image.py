"""The images of the pipeline's components: `<registry>/lead-core:<version>-<code hash>[-cuda]`.

The tag carries lead_core's version and a hash of what the image holds (images/reference.py), so
code changed without a version bump never hits a cache entry made by older code (the image is part
of every cache key, on a cluster and in kfp.local). `LEAD_IMAGE_REGISTRY` overrides the registry
when the components are compiled; images/build.py builds and pushes exactly these references.
"""

from __future__ import annotations

from images.reference import DEFAULT_REGISTRY, IMAGE_NAME, VARIANTS, Variant, image_ref, registry

REGISTRY = registry()
BASE_IMAGE_CPU = image_ref("cpu")
BASE_IMAGE_CUDA = image_ref("cuda")

__all__ = ["BASE_IMAGE_CPU", "BASE_IMAGE_CUDA", "DEFAULT_REGISTRY", "IMAGE_NAME", "REGISTRY", "VARIANTS",
           "Variant", "image_ref"]  # fmt: skip
