"""The references of the lead-core images: `<registry>/lead-core:<version>-<code hash>[-cuda]`.

The code hash covers what decides an image's behaviour: lead_core (every file the build context
sends), the components (their source is compiled into each task), both stage Dockerfiles,
images/constraints.txt and pyproject.toml. Code changed without a version bump therefore gets a new
reference, and KFP's cache (keyed by, among others, the image) never serves results of older code.
components/_image.py (compile, submit, local runs) and images/build.py (build, push) both take the
reference from here, so they always agree.

Imports nothing outside the standard library (images/build.py must work without kfp).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = "ghcr.io/lead-project"
IMAGE_NAME = "lead-core"
# Overrides the code hash (same variable as the pipelines' local cache fingerprint): keeps a cache
# across edits that do not change results, or pins the tag in tests sharing a tree with editors.
FINGERPRINT_ENV = "LEAD_CODE_FINGERPRINT"

Variant = Literal["cpu", "cuda"]
VARIANTS: tuple[Variant, ...] = ("cpu", "cuda")
# What the hash covers, relative to the repository root (folders: every file below them).
HASHED = ("lead_core", "components", "images/Dockerfile.cpu", "images/Dockerfile.cuda",
          "images/constraints.txt", "pyproject.toml")  # fmt: skip
SKIPPED = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def hashed_files(root: Path = REPO) -> list[Path]:
    """The files the code hash reads, in a fixed order (byte caches left out)."""
    files = []
    for name in HASHED:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"image code hash: {path} is missing")
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [
            p
            for p in candidates
            if p.is_file() and p.suffix != ".pyc" and not SKIPPED & set(p.relative_to(root).parts)
        ]
    return files


def code_hash(root: Path = REPO) -> str:
    """12 hex digits of sha256 over the paths and bytes of `hashed_files`, or $LEAD_CODE_FINGERPRINT."""
    override = os.environ.get(FINGERPRINT_ENV)
    if override:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", override):
            raise ValueError(
                f"{FINGERPRINT_ENV}={override!r}: use letters, digits, '_', '.', '-' (an image tag)"
            )
        return override
    digest = hashlib.sha256()
    for path in hashed_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def version(root: Path = REPO) -> str:
    """lead_core.__version__, read from the source (no import: `root` may be another tree)."""
    text = (root / "lead_core" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if not match:
        raise ValueError(f"{root / 'lead_core' / '__init__.py'}: no __version__ line")
    return match.group(1)


def registry() -> str:
    """$LEAD_IMAGE_REGISTRY, else the default registry."""
    return os.environ.get("LEAD_IMAGE_REGISTRY") or DEFAULT_REGISTRY


def image_ref(variant: Variant, registry_: str | None = None, root: Path = REPO) -> str:
    """`<registry>/lead-core:<version>-<code hash>` (cpu) or `...-cuda`."""
    if variant not in VARIANTS:
        raise ValueError(f"image variant must be one of {VARIANTS}, got {variant!r}")
    suffix = "" if variant == "cpu" else f"-{variant}"
    prefix = (registry_ if registry_ is not None else registry()).rstrip("/")
    return f"{prefix}/{IMAGE_NAME}:{version(root)}-{code_hash(root)}{suffix}"
