"""Readings taken while the link is down, kept in a small SQLite file and sent later marked historical.

Bounded: at most `max_rows` readings (oldest dropped first) plus `max_other` counters/incidents, so a
week offline (10,080 readings at one a minute) costs a few MB at most and can never fill the disk.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    kind: str
    payload: bytes
    offline: bool  # taken while the link was down: sent later with historical = true


class Buffer:
    def __init__(self, path: Path, *, max_rows: int = 12_000, max_other: int = 2_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self.max_other = max_other
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " payload BLOB NOT NULL, offline INTEGER NOT NULL DEFAULT 1)"
        )

    def put(self, kind: str, payload: bytes, *, offline: bool = True) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO pending (kind, payload, offline) VALUES (?, ?, ?)", (kind, payload, int(offline))
            )
            readings = kind == "reading"
            cap = self.max_rows if readings else self.max_other
            op = "=" if readings else "!="
            self._db.execute(
                f"DELETE FROM pending WHERE kind {op} 'reading' AND id NOT IN "  # noqa: S608 - no user input
                f"(SELECT id FROM pending WHERE kind {op} 'reading' ORDER BY id DESC LIMIT ?)",
                (cap,),
            )
            self._db.execute("COMMIT")

    def oldest(self, limit: int = 100) -> list[Pending]:
        """Oldest first; counters and incidents before readings."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, payload, offline FROM pending ORDER BY kind = 'reading', id LIMIT ?", (limit,)
            ).fetchall()
        return [Pending(int(r[0]), str(r[1]), bytes(r[2]), bool(r[3])) for r in rows]

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM pending WHERE id = ?", [(i,) for i in ids])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
