"""Fail when tvilling.core imports anything but the standard library, msgspec or itself.

The core is the pure domain: no storage, transport or web code may leak into it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED_THIRD_PARTY = {"msgspec"}
FORBIDDEN_STDLIB = {"sqlite3", "socket", "http", "urllib", "asyncio", "ssl", "subprocess", "shelve", "dbm"}
CORE = Path(__file__).resolve().parents[1] / "src" / "tvilling" / "core"


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def check(core: Path) -> list[str]:
    """Every forbidden import under ``core``, as 'file:line: reason'."""
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in sorted(core.rglob("*.py")):
        for line, name in imports(path):
            top = name.split(".")[0]
            if name.startswith("tvilling."):
                if not name.startswith("tvilling.core"):
                    bad.append(f"{path}:{line}: imports {name} (core may import only tvilling.core)")
            elif top in FORBIDDEN_STDLIB:
                bad.append(f"{path}:{line}: imports {name} (I/O module)")
            elif top not in stdlib and top not in ALLOWED_THIRD_PARTY and top != "__future__":
                bad.append(f"{path}:{line}: imports {name} (third-party; allowed: {sorted(ALLOWED_THIRD_PARTY)})")
    return bad


def main() -> int:
    bad = check(CORE)
    for line in bad:
        print(line)
    print(f"core import check: {len(bad)} problem(s) in {len(list(CORE.rglob('*.py')))} files")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
