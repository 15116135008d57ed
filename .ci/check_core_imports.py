"""Fail when tvilling.core imports anything but a short allowlist: pure standard-library modules,
msgspec, and tvilling.core itself.

The core is the pure domain: no storage, transport or web code may leak into it. An
allowlist (not a denylist) keeps new I/O modules out by default; relative imports that
leave the core and dynamic imports (importlib, __import__) are refused too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED = {
    "__future__", "abc", "base64", "binascii", "bisect", "collections", "copy", "dataclasses", "datetime",
    "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math", "numbers",
    "operator", "re", "statistics", "string", "textwrap", "types", "typing", "uuid", "zoneinfo",
    "msgspec", "numpy",
}
CORE = Path(__file__).resolve().parents[1] / "src" / "tvilling" / "core"


def _problems(path: Path, core: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    depth_in_core = len(path.relative_to(core).parts) - 1  # packages below core/
    bad = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > depth_in_core:
                    bad.append(f"{path}:{node.lineno}: relative import leaves tvilling.core "
                               f"({'.' * node.level}{node.module or ''})")
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                bad.append(f"{path}:{node.lineno}: dynamic import ({called})")
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "tvilling":
                if not (name == "tvilling.core" or name.startswith("tvilling.core.")):
                    bad.append(f"{path}:{node.lineno}: imports {name} (core may import only tvilling.core)")
            elif top not in ALLOWED:
                bad.append(f"{path}:{node.lineno}: imports {name} (not in the core's allowlist)")
    return bad


def check(core: Path) -> list[str]:
    """Every forbidden import under ``core``, as 'file:line: reason'."""
    bad: list[str] = []
    for path in sorted(core.rglob("*.py")):
        bad.extend(_problems(path, core))
    return bad


def main() -> int:
    bad = check(CORE)
    for line in bad:
        print(line)
    print(f"core import check: {len(bad)} problem(s) in {len(list(CORE.rglob('*.py')))} files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
