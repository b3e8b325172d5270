"""Atomic file writes: write a temporary sibling, flush it to disk, rename it over the target.

A writer that fails half-way (full disk, an exception while serialising, a killed process)
leaves the previous file untouched and no temporary file behind; readers never see a half
written file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["write_temp", "atomic_write", "atomic_write_bytes", "sha256_file"]


def write_temp(target: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write a temporary sibling of ``target`` with ``write(binary_file)`` and return its path.

    The caller renames it into place (``os.replace``); it is removed if ``write`` fails.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(target: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``target`` atomically with ``write(binary_file)``; returns ``Path(target)``."""
    target = Path(target)
    tmp = write_temp(target, write)
    os.replace(tmp, target)
    return target


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically."""
    return atomic_write(target, lambda fh: fh.write(data))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
