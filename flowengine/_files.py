"""Folders that hold secrets, private to their owner whatever the umask (SECURITY.md 15).

``Path.mkdir(parents=True)`` gives every folder it makes the process umask's
mode (0777 under umask 000), so a store or a state file put there is readable
by everyone on the host however carefully the file itself was opened. One
function makes such folders for every plugin that keeps data (the SQLite store,
the batch frontend's state files).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_FILE_MODE", "PRIVATE_FOLDER_MODE", "make_private_folder"]

PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700


def make_private_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` and its missing parents, each 0700 whatever the umask; return it.

    Folders that already exist are left as they are (they may be shared on
    purpose, like ``~/.local/share``). Each new one is made and then set to 0700
    explicitly, because ``mkdir``'s mode is filtered by the umask.
    """
    target = Path(folder)
    missing: list[Path] = []
    current = target
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:  # another process made it first: its mode is its own
            continue
        path.chmod(PRIVATE_FOLDER_MODE)
    return target
