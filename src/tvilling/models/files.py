"""DTDL documents read from files: a ``.json`` file, every ``.json`` file under a folder, or a built-in model set,
each document remembering the file it came from so that errors can name it.

>>> docs = read_documents(json_files(model_source("plant")))
>>> len(docs.documents) == len(docs.origins) > 0
True
>>> name_files("$[0].contents: bad", ["a.json"])
'a.json: $.contents: bad'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvilling.core.errors import Invalid, NotFound, TvillingError
from tvilling.models.builtin import builtin_dir, builtin_names
from tvilling.models.service import ModelRegistry

_INDEX = re.compile(r"\$\[(\d+)\]")


@dataclass
class Documents:
    """DTDL documents in reading order, and the origin (``file`` or ``file[i]``) of each."""

    documents: list[Any] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)


def model_source(path_arg: str) -> Path:
    """The file or folder ``path_arg`` names, or else the folder of the built-in model set of that name.

    Raises :class:`NotFound` when it is neither (the message lists the built-in sets)."""
    path = Path(path_arg)
    if path.exists():
        return path
    if path_arg not in builtin_names():
        raise NotFound(f"{path_arg!r} is neither a file or folder nor a built-in model set "
                       f"({', '.join(builtin_names())})", path=path_arg)
    return builtin_dir(path_arg)


def json_files(path: Path) -> list[Path]:
    """``path`` itself, or every ``.json`` file under the folder ``path`` in name order (:class:`Invalid` if none)."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files:
        raise Invalid(f"no .json files under {path}", path=str(path))
    return files


def read_documents(files: Sequence[Path]) -> Documents:
    """The documents of these files (a file holds one document or a list of them).

    Raises :class:`Invalid` naming the file that is not valid JSON."""
    out = Documents()
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise Invalid(f"{f}: not valid JSON: {exc}", path=str(f)) from exc
        items = doc if isinstance(doc, list) else [doc]
        out.documents.extend(items)
        out.origins.extend(f"{f}[{i}]" if isinstance(doc, list) else str(f) for i in range(len(items)))
    return out


def name_files(text: str, origins: Sequence[str]) -> str:
    """Replace ``$[i]`` (an index into all the documents read) by the file it came from."""
    def name(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"{origins[i]}: $" if i < len(origins) else m.group(0)

    return _INDEX.sub(name, text)


def add_documents(models: ModelRegistry, docs: Documents, *, validate_only: bool = False) -> list[str]:
    """Register (or with ``validate_only`` only validate) the documents; errors name the file of each document."""
    try:
        return models.add(docs.documents, validate_only=validate_only)
    except TvillingError as exc:
        exc.message = name_files(exc.message, docs.origins)
        for item in exc.fields.get("errors", []):
            if isinstance(item, dict) and isinstance(item.get("message"), str):
                item["message"] = name_files(item["message"], docs.origins)
        raise
