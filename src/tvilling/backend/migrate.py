"""Merge a data directory of the previous layout into one ``tvilling.db``.

Usage: ``python -m tvilling.backend.migrate DATA_DIR``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tvilling.backend.legacy import legacy_files, migrate_data_dir
from tvilling.core.errors import TvillingError


def main(argv: list[str] | None = None) -> int:
    """Migrate the data directory named by the one argument; 0 when done (or nothing to do), 1 on error."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tvilling.backend.migrate DATA_DIR", file=sys.stderr)
        return 2
    data_dir = Path(args[0])
    if not data_dir.is_dir():
        print(f"error: {data_dir} is not a directory", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not legacy_files(data_dir):
        print(f"{data_dir}: nothing to migrate")
        return 0
    try:
        copied = migrate_data_dir(data_dir)
    except TvillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{data_dir}: merged {', '.join(f'{name} ({n} rows)' for name, n in copied.items())} into tvilling.db")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
