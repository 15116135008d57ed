"""Reading request bodies with bounds: size (413), JSON syntax (400), nesting depth (413)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request

from tvilling.core.errors import Malformed, TooLarge
from tvilling.core.patch import MAX_DEPTH, check_json


async def read_json(request: Request, *, limit: int | None = None, setting: str = "max_body_bytes") -> Any:
    """The request's JSON body, refusing more than ``limit`` (default: the configured) bytes.

    ``setting`` names the setting that holds the limit, so that a 413 says what to change.
    """
    return decode_json(await read_bytes(request, limit=limit, setting=setting))


async def read_bytes(request: Request, *, limit: int | None = None, setting: str = "max_body_bytes") -> bytes:
    """The request's body as bytes, refusing more than ``limit`` (default: the configured) bytes (413)."""
    if limit is None:
        limit = int(request.app.state.platform.settings.max_body_bytes)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the request body is {int(declared):,} bytes", limit, setting)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"the request body exceeds {limit:,} bytes", limit, setting)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    """A body's JSON value: 400 for an empty body or invalid JSON, 413 past the nesting limit."""
    if not raw.strip():
        raise Malformed("the request needs a JSON body")
    try:
        value = msgspec.json.decode(raw)
        check_json(value, field="body", max_depth=MAX_DEPTH + 2)
    except msgspec.DecodeError as exc:
        raise Malformed(f"the body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise TooLarge(f"the body is nested more than {MAX_DEPTH} levels deep", rule="max_depth") from None
    return value


def _too_large(what: str, limit: int, setting: str) -> TooLarge:
    return TooLarge(f"{what}; this server accepts at most {limit:,} bytes ({_size(limit)}, setting {setting}): "
                    "send it in smaller parts", rule=setting, limit=limit)


def _size(n: int) -> str:
    """``1 MiB``, ``16 MiB``, ``1.5 KiB``: a byte count as people write it."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def if_match(request: Request) -> int | None:
    """The revision an ``If-Match`` header names (``"7"``, ``W/"7"``), or None (absent or ``*``)."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    tag = raw.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isdigit():
        raise Malformed(f"If-Match must be an ETag returned by this server (like \"7\"), got {raw!r}",
                        field="If-Match")
    return int(tag)
