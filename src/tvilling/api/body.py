"""Reading request bodies with bounds: size (413), JSON syntax (400), nesting depth (413)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request

from tvilling.core.errors import Malformed, TooLarge
from tvilling.core.patch import MAX_DEPTH, check_json


async def read_json(request: Request, *, limit: int | None = None) -> Any:
    """The request's JSON body, refusing more than ``limit`` (default: the configured) bytes."""
    if limit is None:
        limit = int(request.app.state.platform.settings.max_body_bytes)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {declared} bytes; at most {limit} are accepted",
                       rule="max_body_bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds {limit} bytes", rule="max_body_bytes", limit=limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
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
