"""A server's stable MQTT identity: the client ids of its sessions, kept in its data directory.

A broker keeps a persistent session (subscriptions and every QoS 1 message queued while
the client is away) under the client id. A server must therefore come back with the id it
left with: a new id per start would never receive what was queued for the old one, and
would leave the old session behind to queue messages nobody reads. The identity is made
once, written to ``<data_dir>/mqtt-identity``, and reused by every later start on that data
directory. While a process runs, it holds a lock on the file, so a second process on the
same directory (which would take the session over from the first, back and forth) is
refused with a message saying what to do.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with claim_identity(d) as first:
...     name = first.ingest_client_id
>>> with claim_identity(d) as again:
...     again.ingest_client_id == name, again.commands_client_id == name.replace("-ingest-", "-commands-")
(True, True)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import uuid
from pathlib import Path
from types import TracebackType

from tvilling.core.errors import Conflict, Invalid, Unavailable

FILE = "mqtt-identity"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class MqttIdentity:
    """The client ids of one server; holds the data directory's identity lock until :meth:`release`."""

    def __init__(self, name: str, *, explicit: str | None = None, lock_fd: int | None = None,
                 path: Path | None = None) -> None:
        self.name = name
        self.explicit = explicit
        self.path = path
        self._fd = lock_fd

    @property
    def ingest_client_id(self) -> str:
        return self.explicit or f"tvilling-ingest-{self.name}"

    @property
    def commands_client_id(self) -> str:
        return f"{self.explicit}-commands" if self.explicit else f"tvilling-commands-{self.name}"

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> MqttIdentity:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def claim_identity(data_dir: Path, client_id: str | None = None) -> MqttIdentity:
    """The identity of the server on ``data_dir``, made on first use; ``client_id`` overrides the ingest id.

    Raises ``Conflict`` while another process holds it (two workers need two data directories,
    or two explicit client ids), ``Unavailable`` if the directory cannot be written.
    """
    if client_id is not None and not _NAME.match(client_id):
        raise Invalid(f"MQTT client id {client_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'",
                      field="mqtt_client_id", rule="format")
    path = Path(data_dir) / FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise Unavailable(f"cannot keep the MQTT identity in {path}: {exc}", path=str(path)) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            raise Conflict(
                f"another Tvilling process on {data_dir} is using its MQTT identity {holder or '(new)'}: two "
                "processes with one identity would take the broker session from each other. Give each worker "
                "its own --data-dir (or --mqtt-client-id), and --shared-group to split the stream",
                path=str(path), rule="identity_in_use") from None
        name = _read(fd)
        if not name:
            host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24].strip("-") or "host"
            name = f"{host}-{uuid.uuid4().hex[:8]}"
            os.ftruncate(fd, 0)
            os.pwrite(fd, (name + "\n").encode(), 0)
            os.fsync(fd)
        elif not _NAME.match(name):
            raise Invalid(f"{path} holds {name!r}, not an MQTT identity; delete the file to make a new one "
                          "(the broker session of the old one is then left to expire)", path=str(path),
                          rule="identity_file")
    except BaseException:
        os.close(fd)
        raise
    return MqttIdentity(name, explicit=client_id, lock_fd=fd, path=path)


def _read(fd: int) -> str:
    return os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
