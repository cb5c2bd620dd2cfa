"""`lead identity`: the identity (content digest) of a dataset or backbone source (see `stage`)."""

from lead_core.identity.stage import (
    Config,
    Identity,
    backbone_identity,
    dataset_identity,
    file_sha256,
    identify,
    local_identity,
    remote_identity,
    run,
)

__all__ = [
    "Config",
    "Identity",
    "backbone_identity",
    "dataset_identity",
    "file_sha256",
    "identify",
    "local_identity",
    "remote_identity",
    "run",
]
