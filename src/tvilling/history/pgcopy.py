"""PostgreSQL binary COPY payloads built from NumPy columns in one go.

``COPY … FROM STDIN (FORMAT BINARY)`` takes each row as a field count and, per field, a
length and the big-endian value. For fixed-width columns that is exactly a packed NumPy
record array, so a 100k-row batch is encoded without a Python loop per row (psycopg's
``write_row`` encodes one row at a time). Rows with a text value are appended one by one
after the others; they are the rare, non-numeric readings.

>>> len(encode({"a": ("i4", np.array([1, 2], dtype=np.int32))})) == 19 + 2 * (2 + 4 + 4) + 2
True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
WIDTH = {"i2": 2, "i4": 4, "i8": 8, "f8": 8}


def _records(cols: Mapping[str, tuple[str, npt.NDArray[np.generic]]], n: int,
             text_len: npt.NDArray[np.int32] | None) -> npt.NDArray[np.void]:
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, (kind, _) in cols.items():
        fields += [(f"len_{name}", ">i4"), (name, ">" + kind)]
    if text_len is not None:
        fields.append(("len_text", ">i4"))
    rec = np.empty(n, dtype=np.dtype(fields))
    rec["nfields"] = len(cols) + (text_len is not None)
    for name, (kind, values) in cols.items():
        rec[f"len_{name}"] = WIDTH[kind]
        rec[name] = values
    if text_len is not None:
        rec["len_text"] = text_len
    return rec


def encode(cols: Mapping[str, tuple[str, npt.NDArray[np.generic]]],
           text: npt.NDArray[np.object_] | None = None) -> bytes:
    """The whole COPY stream for the columns (``name -> (pg kind, values)``), then ``text`` last if given."""
    n = len(next(iter(cols.values()))[1])
    if text is None:
        return SIGNATURE + _records(cols, n, None).tobytes() + TRAILER
    has = np.array([t is not None for t in text], dtype=bool)  # per text row: this batch has non-numerics
    plain = np.flatnonzero(~has)
    parts = [SIGNATURE,
             _records({k: (kind, v[plain]) for k, (kind, v) in cols.items()}, len(plain),
                      np.full(len(plain), -1, dtype=np.int32)).tobytes()]
    rich = np.flatnonzero(has)
    if len(rich):
        encoded = [str(t).encode() for t in text[rich]]
        rec = _records({k: (kind, v[rich]) for k, (kind, v) in cols.items()}, len(rich),
                       np.array([len(e) for e in encoded], dtype=np.int32))
        parts += [r.tobytes() + e for r, e in zip(rec, encoded, strict=True)]
    parts.append(TRAILER)
    return b"".join(parts)
