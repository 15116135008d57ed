from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _checker():
    spec = importlib.util.spec_from_file_location("check_core_imports", ROOT / ".ci" / "check_core_imports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_core_imports_no_storage_transport_or_web_code():
    checker = _checker()
    assert checker.check(ROOT / "src" / "tvilling" / "core") == []


def test_the_import_check_catches_a_leak(tmp_path):
    checker = _checker()
    (tmp_path / "bad.py").write_text(
        "import sqlite3\nfrom tvilling.twins.service import TwinService\nimport fastapi\n"
        "from ..twins.adapters import sqlite\nfrom . import ids\nimport importlib\n"
        "importlib.import_module('socket')\nimport ftplib, wsgiref\n"
    )
    problems = checker.check(tmp_path)
    text = "\n".join(problems)
    for leak in ("sqlite3", "tvilling.twins", "fastapi", "relative import leaves", "importlib",
                 "dynamic import", "ftplib", "wsgiref"):
        assert leak in text, leak
    assert "from . import ids" not in text and len(problems) == 8
