"""Secrets on disk: written once, atomically, readable only by their owner (mode 0600)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["read_or_create", "write_private"]


def _write_temp(directory: Path, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, mode 0600; readers see the old or the new file."""
    os.replace(_write_temp(path.parent, data), path)


def read_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    """The file's content; on first use ``create()``'s, stored with mode 0600.

    Several workers may start at once: ``os.link`` fails if the file appeared meanwhile, and
    then everyone reads the winner's, so all processes share one secret.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    temp = _write_temp(path.parent, create())
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return path.read_bytes()
