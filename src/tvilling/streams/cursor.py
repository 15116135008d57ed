"""Cursors: a position in every source of a hub, written ``events:123,commands:45``.

A bare number is a position in the first source; sources a cursor leaves out start at
their live head.

>>> decode_cursor("events:12,commands:3", ["events", "commands"])
{'events': 12, 'commands': 3}
>>> encode_cursor({"events": 12, "commands": 3})
'events:12,commands:3'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tvilling.core.errors import Malformed

MAX_CURSOR = 512


def encode_cursor(positions: Mapping[str, int]) -> str:
    """``name:position`` pairs, comma-separated, in the mapping's order."""
    return ",".join(f"{name}:{pos}" for name, pos in positions.items())


def decode_cursor(text: str, names: Sequence[str]) -> dict[str, int]:
    """Positions by source name. A bare number is a position in the first source."""
    text = text.strip()
    if len(text) > MAX_CURSOR:
        raise Malformed(f"a cursor is at most {MAX_CURSOR} characters", field="after")
    if text.isdigit():
        return {names[0]: int(text)}
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, pos = part.strip().partition(":")
        if not sep or not pos.isdigit() or name in out:
            raise Malformed(f"cursor {text!r} is not 'source:position,...' (for example "
                            f"'{names[0]}:0'), nor a bare position", field="after")
        if name not in names:
            raise Malformed(f"cursor {text!r} names source {name!r}; known sources: {', '.join(names)}",
                            field="after")
        out[name] = int(pos)
    return out
