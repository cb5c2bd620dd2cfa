"""User errors: mistakes the user can fix, reported as one line that says what to do.

`UserError` is the one base class: bad input data (`SchemaError`), a bad config file or flag
(`ConfigError`), an unreadable remote URI (`RemoteError`), a truncated or corrupt compressed file
(`CorruptFileError`) and a missing optional package (`MissingExtraError`) all derive from it. The
`lead` CLI prints a UserError as ``lead <stage>: error: <message>`` and exits 1 without a
traceback; any other exception is a bug and keeps its traceback.

Each subclass also derives from the built-in type callers already catch (ValueError, OSError,
ImportError), so code written against those keeps working.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class UserError(Exception):
    """A mistake the user can fix; the message names the file (and line) and what to do."""


class MissingExtraError(UserError, ImportError):
    """An optional package is not installed; the message names the pip extra that installs it."""


def install_hint(extra: str) -> str:
    """The command that installs lead_core's optional dependency group `extra`."""
    return f"pip install 'lead-core[{extra}]'"


def require(module: str, extra: str, purpose: str, note: str = "") -> ModuleType:
    """Import `module`, or raise MissingExtraError saying which extra of lead-core provides it.

    `purpose` begins the message ("<purpose> needs the Python package ..."), e.g. "a faiss index";
    `note` ends it (e.g. another extra that also provides the package).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs the Python package {module!r}, which is not installed: "
            f"{install_hint(extra)}{f' {note}' if note else ''}"
        ) from err
