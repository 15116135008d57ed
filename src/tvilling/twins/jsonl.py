"""JSON Lines files of twins (one twin a line, blank lines skipped), as ``tvilling twins import`` reads them.

>>> import tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
>>> _ = f.write_text('{"id": "a"}\\n\\n{"id": "b"}\\n', encoding="utf-8")
>>> count_items(f), [item["id"] for item in read_items(f)]
(2, ['a', 'b'])
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tvilling.core.errors import Invalid


def count_items(path: Path) -> int:
    """How many non-blank lines ``path`` has (what a progress bar needs before the import starts)."""
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def read_items(path: Path) -> Iterator[Any]:
    """Each non-blank line of ``path``, decoded; a line that is not JSON raises :class:`Invalid` naming
    ``path:line``."""
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise Invalid(f"{path}:{n}: not valid JSON: {exc}", path=str(path), line=n) from exc
