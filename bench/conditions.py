"""The conditions a benchmark ran in: the machine, and the durability of each backend.

Figures mean little without them: a PostgreSQL cluster with ``fsync=off`` writes
several times faster than one with the server's defaults, and SQLite in WAL mode
with ``synchronous=NORMAL`` skips the sync that ``FULL`` does at every commit.
"""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path

from sqlalchemy import text

from pbidentity.storage import Storage
from pbidentity.storage.sql import SqlStorage

__all__ = ["backend", "machine"]


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def machine() -> str:
    """Cores, memory, CPU model, OS and Python, as one line."""
    memory = _memory_gib()
    ram = f", {memory:.0f} GiB RAM" if memory is not None else ""
    return (
        f"machine: {os.cpu_count()} cores{ram}, {_cpu_model()}, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}"
    )


def backend(storage: Storage) -> str:
    """The database, its version and the settings that decide what a commit costs."""
    if not isinstance(storage, SqlStorage):
        return "the in-memory store (nothing is written anywhere)"
    engine = storage.engine
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            journal = connection.execute(text("PRAGMA journal_mode")).scalar_one()
            level = connection.execute(text("PRAGMA synchronous")).scalar_one()
            name = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))
            return (
                f"SQLite {sqlite3.sqlite_version}: journal_mode={journal}, synchronous={name} "
                "(in WAL mode NORMAL syncs at checkpoints, not at each commit: a commit "
                "survives the app crashing, and may be lost if the machine loses power)"
            )
        settings = {
            name: connection.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes")
        }
    version = settings.pop("server_version")
    shown = ", ".join(f"{name}={value}" for name, value in settings.items())
    durable = settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
    meaning = "durable at each commit" if durable else "NOT durable: faster than in production"
    return f"PostgreSQL {version}: {shown} ({meaning})"
