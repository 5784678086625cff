"""The one check of a server path a client names: it must lie inside the folders a setting allows.

Services read some inputs from the server's own disk (an embedding store to train on, a corpus
file to index) and the client names them. Every service applies the same rules:

- symlinks and ``..`` are resolved before the check, so no name escapes the allowed folders;
- a relative path is tried under every allowed folder in order, and the first that exists wins;
- outside every allowed folder (or no folder allowed at all) is PERMISSION_DENIED, a name that
  cannot be a path is INVALID_ARGUMENT, and an allowed path that does not exist is NOT_FOUND;
- the client's text is echoed in the sentence only up to a bound (``featurelens.kit.echo.shown``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from featurelens.kit.echo import shown
from featurelens.kit.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError

#: Longest name of one path component, in bytes (NAME_MAX of Linux file systems).
MAX_COMPONENT_BYTES = 255
#: Longest whole path, in bytes (PATH_MAX of Linux).
MAX_PATH_BYTES = 4096


def allowed_path(requested: str, roots: Sequence[Path], *, field: str, setting: str) -> Path:
    """The existing, resolved path that ``requested`` names inside one of ``roots``.

    ``field`` is the request field the path came from and ``setting`` the environment variable
    that lists ``roots``; both appear in the error sentences so the caller and the operator
    each know what to change.
    """
    _check_form(requested, field)
    if not roots:
        raise PermissionDeniedError(
            f"{field} names a file on the server, but this server reads none: {setting} is empty"
        )
    allowed_roots = [_resolve(root, field, requested) for root in roots]
    path = Path(requested).expanduser() if requested.startswith("~") else Path(requested)
    candidates = [path] if path.is_absolute() else [root / path for root in allowed_roots]
    inside = [
        resolved
        for resolved in (_resolve(candidate, field, requested) for candidate in candidates)
        if any(resolved.is_relative_to(root) for root in allowed_roots)
    ]
    if not inside:
        raise PermissionDeniedError(
            f"{field} {shown(requested)} is outside the folders this server may read ({setting})"
        )
    for resolved in inside:
        if _exists(resolved):
            return resolved
    raise NotFoundError(f"{field} {shown(requested)} does not exist on the server")


def _check_form(requested: str, field: str) -> None:
    if not requested.strip():
        raise InvalidArgumentError(f"{field} is empty; name a file or folder on the server")
    if "\x00" in requested:
        raise InvalidArgumentError(f"{field} {shown(requested)} contains a NUL character")
    encoded = os.fsencode(requested)
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidArgumentError(
            f"{field} is {len(encoded):,} bytes long; a path may have at most {MAX_PATH_BYTES:,}"
        )
    for part in encoded.split(b"/"):
        if len(part) > MAX_COMPONENT_BYTES:
            raise InvalidArgumentError(
                f"{field} {shown(requested)} has a name of {len(part):,} bytes; "
                f"one part of a path may have at most {MAX_COMPONENT_BYTES}"
            )


def _resolve(path: Path, field: str, requested: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        # RuntimeError is how Python 3.11 reports a symbolic link that loops.
        raise InvalidArgumentError(f"{field} {shown(requested)} cannot be resolved on the server") from None


def _exists(path: Path) -> bool:
    # A folder the server itself may not enter hides what is in it, as if it were not there.
    try:
        return path.exists()
    except OSError:
        return False
