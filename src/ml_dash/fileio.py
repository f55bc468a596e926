"""Replacing a file atomically: readers see the old version or the new one, never half."""

from __future__ import annotations

import os
import threading

from .errors import StorageError


def atomic_write_bytes(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    ``durable`` fsyncs the file before the rename (a power cut then leaves the old or
    the new version). Raises StorageError naming ``path`` and leaves no temporary file.
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{threading.get_ident()}-{name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {exc}") from exc
