#!/usr/bin/env python
"""Pin every image of deploy/ to the digest its tag names in its registry now.

    python deploy/refresh_digests.py                       # all images
    python deploy/refresh_digests.py lead-mlflow-server    # only these (after images/build.py --push)
    python deploy/refresh_digests.py --check               # exit 1 if an image has no digest

The images live in ONE file, deploy/image-digests/kustomization.yaml (a kustomize Component that
both overlays include): name (as the manifests write it), newName (where to pull it from, when not
the name), newTag (the version) and digest. This script asks the registry which digest each tag
points at (the multi-platform index, so every node architecture gets the image built for it) and
rewrites the file, all entries or none. To move to a new version, edit newTag and run it.

Needs one of these on PATH, with `docker login` / registry credentials where the registry wants
them: crane (`crane digest`), docker with buildx (`docker buildx imagetools inspect`), skopeo
(`skopeo inspect --raw`, whose bytes are what the digest is the sha256 of).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

IMAGES_FILE = Path(__file__).resolve().parent / "image-digests" / "kustomization.yaml"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
FIELDS = ("name", "newName", "newTag", "digest")
HEADER = """\
# Every image deploy/ runs, pinned by digest: the one place for image versions. Written by
# deploy/refresh_digests.py, which asks each registry which digest newTag points at; to move to a new
# version, change newTag and run it. Comments here are not kept.
#   name:    the image as the manifests write it (no tag)
#   newName: where to pull it from, when that is not `name` (set your registry for
#            lead-mlflow-server, the image images/build.py --push builds from images/Dockerfile.mlflow)
#   newTag, digest: the version, and the digest that tag pointed at when last refreshed
# lead-mlflow-server has a digest only once you pushed it and ran
#   python deploy/refresh_digests.py lead-mlflow-server
# (its digest is a property of your build); `refresh_digests.py --check` says whether all are pinned.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
"""


class RefreshError(RuntimeError):
    """A digest could not be resolved or the images file is malformed; the message says which."""


def read_images(path: Path = IMAGES_FILE) -> list[dict[str, str]]:
    """The `images:` entries of the images file, each with name, newTag and optional newName/digest."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RefreshError(f"{path}: not valid YAML: {error}") from None
    entries = (document or {}).get("images")
    if not isinstance(entries, list) or not entries:
        raise RefreshError(f"{path}: expected a non-empty `images:` list")
    for index, entry in enumerate(entries):
        where = f"{path}: images[{index}]"
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("newTag"):
            raise RefreshError(f"{where}: every entry needs `name` and `newTag`, got {entry!r}")
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise RefreshError(f"{where} ({entry['name']}): unknown fields {sorted(unknown)}")
        entry["newTag"] = str(entry["newTag"])
        if "digest" in entry and not DIGEST.match(str(entry["digest"])):
            raise RefreshError(
                f"{where} ({entry['name']}): digest {entry['digest']!r} is not sha256:<64 hex>"
            )
    return entries


def render_images(entries: list[dict[str, str]]) -> str:
    """The images file for `entries` (the inverse of read_images, comments aside)."""
    lines = [HEADER.rstrip("\n"), "images:"]
    for entry in entries:
        lines.append(f"  - name: {entry['name']}")
        if entry.get("newName"):
            lines.append(f"    newName: {entry['newName']}")
        lines.append(f"    newTag: {json.dumps(entry['newTag'])}")  # quoted: "3.17.2" stays a string
        if entry.get("digest"):
            lines.append(f"    digest: {entry['digest']}")
    return "\n".join(lines) + "\n"


def reference(entry: dict[str, str]) -> str:
    """registry/repository:tag that the entry's digest must match."""
    return f"{entry.get('newName') or entry['name']}:{entry['newTag']}"


def _run(command: list[str]) -> bytes:
    done = subprocess.run(command, capture_output=True, timeout=120)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise RefreshError(f"`{' '.join(command)}` failed ({done.returncode}): {stderr}")
    return done.stdout


def _crane(ref: str) -> str:
    return _run(["crane", "digest", ref]).decode().strip()


def _docker(ref: str) -> str:
    out = _run(["docker", "buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"])
    return json.loads(out)["digest"]


def _skopeo(ref: str) -> str:
    return "sha256:" + hashlib.sha256(_run(["skopeo", "inspect", "--raw", f"docker://{ref}"])).hexdigest()


RESOLVERS: dict[str, Callable[[str], str]] = {"crane": _crane, "docker": _docker, "skopeo": _skopeo}


def pick_resolver(tool: str | None) -> Callable[[str], str]:
    """The resolver of `tool`, or of the first of crane, docker, skopeo found on PATH."""
    candidates = [tool] if tool else list(RESOLVERS)
    for name in candidates:
        if shutil.which(name):
            return RESOLVERS[name]
    raise RefreshError(
        f"none of {', '.join(candidates)} is on PATH: install crane (go-containerregistry), "
        "docker with buildx, or skopeo"
    )


def refresh(
    entries: list[dict[str, str]], resolve: Callable[[str], str], only: set[str] | None = None
) -> list[tuple[str, str]]:
    """Set each entry's digest (entries named in `only` by name or last path part, else all) to
    what `resolve` returns for its tag; returns (reference, digest) per entry resolved."""
    chosen = [e for e in entries if not only or {e["name"], e["name"].rsplit("/", 1)[-1]} & only]
    missing = (only or set()) - {n for e in chosen for n in (e["name"], e["name"].rsplit("/", 1)[-1])}
    if missing:
        raise RefreshError(f"no image named {sorted(missing)} in {IMAGES_FILE.name}")
    changes = []
    for entry in chosen:  # resolve all before changing any: the file is written all or nothing
        digest = resolve(reference(entry)).strip()
        if not DIGEST.match(digest):
            raise RefreshError(f"{reference(entry)}: the registry answered {digest!r}, not sha256:<64 hex>")
        changes.append((entry, digest))
    for entry, digest in changes:
        entry["digest"] = digest
    return [(reference(entry), digest) for entry, digest in changes]


def write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="refresh only these images (name or its last part)")
    parser.add_argument("--check", action="store_true", help="only report images without a digest")
    parser.add_argument("--tool", choices=sorted(RESOLVERS), help="default: the first found on PATH")
    parser.add_argument("--file", type=Path, default=IMAGES_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        entries = read_images(args.file)
        if args.check:
            unpinned = [reference(e) for e in entries if not e.get("digest")]
            for ref in unpinned:
                print(f"not pinned by digest: {ref}", file=sys.stderr)
            return 1 if unpinned else 0
        before = {reference(e): e.get("digest") for e in entries}
        changes = refresh(entries, pick_resolver(args.tool), set(args.names) or None)
        write_atomically(args.file, render_images(entries))
    except RefreshError as error:
        print(f"refresh_digests: {error}", file=sys.stderr)
        return 1
    for ref, new in changes:
        state = "unchanged" if before[ref] == new else f"was {before[ref] or 'unpinned'}"
        print(f"{ref}@{new}  ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
