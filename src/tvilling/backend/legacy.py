"""Data directories of the previous layout: one SQLite file per store, merged into ``tvilling.db``.

The previous release kept dead letters, commands, alarms and analytic versions in files of
their own beside ``tvilling.db``, and the stream consumers' saved positions in a JSON file,
``stream-cursors.json``. On open, each such SQLite file is attached and its rows copied, and
the JSON file's positions inserted into the ``stream_cursors`` table, all into ``tvilling.db``
in one transaction (keys kept, so a copy interrupted before the rename is simply copied
again); then each file is renamed ``<name>.migrated`` and a log line says so.

Run it by hand (for instance when the automatic migration was refused)::

    python -m tvilling.backend.migrate DATA_DIR
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from tvilling.backend.sqlite import SqliteDatabase
from tvilling.core.errors import TvillingError, Unavailable
from tvilling.streams.offsets import MAX_POSITION, check_name

log = logging.getLogger("tvilling.backend")

# file of the previous layout -> its tables, in the order they are copied
LEGACY_FILES: dict[str, tuple[str, ...]] = {
    "dead-letters.db": ("dead_letters",),
    "commands.db": ("commands", "command_changes"),
    "alarms.db": ("alarms", "alarm_changes", "alarm_cursors", "alarm_shelves"),
    "analytics.db": ("analytic_versions",),
}
CURSOR_FILE = "stream-cursors.json"  # the stream consumers' positions: {name: position}
SUFFIX = ".migrated"
_STORE_OF = {"dead-letters.db": "dead_letters", "commands.db": "command_store", "alarms.db": "alarm_store",
             "analytics.db": "analytics_registry", CURSOR_FILE: "cursors"}


def migrate_command(data_dir: Path) -> str:
    """The command that migrates ``data_dir`` by hand."""
    return f"python -m tvilling.backend.migrate {data_dir}"


def legacy_files(data_dir: Path) -> list[Path]:
    """The files of the previous layout still in ``data_dir``."""
    return [data_dir / name for name in (*LEGACY_FILES, CURSOR_FILE) if (data_dir / name).is_file()]


def migrate_data_dir(data_dir: Path) -> dict[str, int]:
    """Copy every file of the previous layout into ``tvilling.db``; returns rows copied per file (empty: nothing to do).

    Raises ``Unavailable`` naming :func:`migrate_command` when it cannot be done automatically.
    """
    found = legacy_files(data_dir)
    if not found:
        return {}
    from tvilling.backend.stores import DB_FILE, EMBEDDED, build

    try:
        db = SqliteDatabase(data_dir / DB_FILE)
        try:
            for path in found:  # the tables, in their current form, before anything is copied
                build(_STORE_OF[path.name], EMBEDDED, db).close()
            positions = _positions(data_dir / CURSOR_FILE) if data_dir / CURSOR_FILE in found else None
            copied = _copy(db, [p for p in found if p.name in LEGACY_FILES], positions)
        finally:
            db.close()
        for path in found:
            _rename(path)
    except (TvillingError, sqlite3.Error, OSError) as exc:
        raise Unavailable(
            f"{data_dir} holds files of the previous layout ({', '.join(p.name for p in found)}) that could not be "
            f"merged into {DB_FILE} automatically: {exc}. Stop every process using {data_dir}, then run: "
            f"{migrate_command(data_dir)}", rule="migration", path=str(data_dir)) from exc
    for path in found:
        log.warning("migrated %s into %s (%d rows); the old file is kept as %s%s", path, data_dir / DB_FILE,
                    copied[path.name], path.name, SUFFIX)
    return copied


def _positions(path: Path) -> dict[str, int]:
    """The positions of the JSON cursor file, checked as its store checked them when it wrote them."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and type(v) is int and 0 <= v <= MAX_POSITION for k, v in data.items()):
        raise Unavailable(f"{path.name} is damaged (expected a JSON object of consumer names to positions); "
                          "remove it to let every consumer start over", rule="damaged", path=str(path))
    for name in data:
        check_name(name)
    return data


def _copy(db: SqliteDatabase, found: list[Path], positions: dict[str, int] | None) -> dict[str, int]:
    conn = db.connection()
    aliases = {path.name: f"legacy_{i}" for i, path in enumerate(found)}
    for path in found:
        conn.execute("ATTACH DATABASE ? AS " + aliases[path.name], (str(path),))
    copied: dict[str, int] = {}
    try:
        with db.write("merging the files of the previous layout"):
            for path in found:
                alias = aliases[path.name]
                copied[path.name] = 0
                for table in LEGACY_FILES[path.name]:
                    old = [r[1] for r in conn.execute(f"PRAGMA {alias}.table_info({table})")]
                    if not old:
                        continue  # a table the old file never had
                    new = {r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")}
                    unknown = [c for c in old if c not in new]
                    if unknown:
                        raise Unavailable(f"{path.name} table {table} has columns this Tvilling does not know: "
                                          f"{', '.join(unknown)}", rule="migration")
                    cols = ", ".join(old)
                    cur = conn.execute(f"INSERT OR IGNORE INTO main.{table} ({cols})"
                                       f" SELECT {cols} FROM {alias}.{table}")
                    copied[path.name] += max(cur.rowcount, 0)
            if positions is not None:
                cur = conn.executemany("INSERT OR IGNORE INTO main.stream_cursors (name, position) VALUES (?, ?)",
                                       sorted(positions.items()))
                copied[CURSOR_FILE] = max(cur.rowcount, 0)
    finally:
        for alias in aliases.values():
            conn.execute(f"DETACH DATABASE {alias}")
    return copied


def _rename(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(path.with_name(path.name + SUFFIX + suffix))
    path.with_name(path.name + ".lock").unlink(missing_ok=True)  # the JSON file's writers' lock, empty
