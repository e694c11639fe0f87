"""Files written atomically: a reader sees the old file or the complete new one, never a part."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any


def _temp_prefix(path: str) -> str:
    """Temp files of `path` are `.<name>.<pid>.<random>.recfast-tmp` beside it."""
    return f".{os.path.basename(path)}.{os.getpid()}."


def _remove_stale_temps(path: str) -> None:
    """Remove temp files that an earlier writer of `path` left when it was killed: those whose
    writer process no longer exists (a live writer's temp file is left alone)."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern = os.path.join(
        glob.escape(folder), f".{glob.escape(os.path.basename(path))}.*.recfast-tmp"
    )
    for tmp in glob.glob(pattern):
        pid_part = os.path.basename(tmp)[len(os.path.basename(path)) + 2 :].split(".", 1)[0]
        if not pid_part.isdigit():
            continue
        try:
            os.kill(int(pid_part), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue  # alive (another user's), or not a pid: leave it
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Call write(f) on a temp file in the same folder, fsync it, rename it over `path`, then
    fsync the folder so the rename survives a crash. On any error the temp file is removed and
    `path` is untouched. Temp files left by a writer that was killed (SIGKILL, power loss) are
    removed by the next write of the same path. A path naming a folder, or in a folder that does
    not exist, is a ValueError naming it, raised before `write` is called."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; give the path of a file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{path}: the folder {folder} does not exist")
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".recfast-tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
