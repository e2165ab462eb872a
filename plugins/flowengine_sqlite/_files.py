"""The database file and its folders, private to their owner (SECURITY.md 15).

SQLite creates the ``-wal`` and ``-shm`` files beside the database with the
database file's own mode, so creating the database 0600 before SQLite opens
it is what keeps all three private; ``tighten`` checks afterwards and fixes
any sibling a looser process (or an older flowengine) left behind.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from flowengine import make_private_folder

__all__ = ["FILE_MODE", "FOLDER_MODE", "create_private_file", "siblings", "tighten"]

FILE_MODE = 0o600
FOLDER_MODE = 0o700

log = logging.getLogger("flowengine.store")


def siblings(path: Path) -> tuple[Path, Path, Path]:
    """The database file and the two files SQLite keeps beside it in WAL mode."""
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def create_private_file(path: Path) -> None:
    """Make sure ``path`` exists, creating it (and its folders) readable by its owner only.

    The file is created by ``os.open`` with mode 0600 before SQLite ever sees
    it, so there is no moment when it exists with the umask's looser mode.
    """
    make_private_folder(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    os.close(fd)


def tighten(path: Path) -> None:
    """Set the database file and its siblings to 0600 if any of them is readable by others."""
    for file in siblings(path):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(FILE_MODE)
                log.warning("made %s private (it was mode %o)", file, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:  # not our file: say so, the store still works
            log.warning("cannot make %s private: %s", file, exc.strerror)
