"""The platform a benchmark measures: embedded in a temporary directory, or PostgreSQL in a
schema of its own; everything it created is removed afterwards."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tvilling.app import Platform, build_platform
from tvilling.config import Settings


@contextmanager
def bench_platform(store: str, pg: str = "") -> Iterator[Platform]:
    """``store`` is "embedded" or "postgres" (at ``pg``)."""
    with tempfile.TemporaryDirectory(prefix="tvilling-bench-") as tmp:
        schema = None
        if store == "embedded":
            settings = Settings(data_dir=Path(tmp))
        else:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            settings = Settings(store=pg, pg_schema=schema)
        platform = build_platform(settings)
        try:
            yield platform
        finally:
            platform.close()
            if schema is not None:
                import psycopg

                with psycopg.connect(pg, autocommit=True) as conn:
                    for name in (schema, f"{schema}_history"):
                        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
