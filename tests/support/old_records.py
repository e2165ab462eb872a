"""Rewrite flows in a SQLite store as an older flowengine left them (0.1.0 wrote no ``outcome``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rewrite_flows(path: Path, change: Callable[[dict[str, Any]], None]) -> int:
    """Apply ``change`` to every stored flow's record (a plain, unencrypted store); how many."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT id, record FROM flows").fetchall()
        for flow_id, record in rows:
            data = json.loads(record)
            change(data)
            db.execute("UPDATE flows SET record = ? WHERE id = ?", (json.dumps(data).encode(), flow_id))
        db.commit()
    finally:
        db.close()
    return len(rows)


def as_0_1_0(data: dict[str, Any]) -> None:
    """The record as 0.1.0 wrote it: no ``outcome`` key at all."""
    assert "outcome" in data  # what this version writes, so the rewrite removes something
    del data["outcome"]
