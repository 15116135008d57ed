"""Can the server listen where it is told to? Asked before anything heavy starts.

uvicorn binds its port only after the application's startup (the store opened, the broker
connected, the analytics loaded) and answers a taken port with a log line, a shutdown and
``sys.exit`` — inside ``tvilling demo`` a page of tracebacks. :func:`check_listen` binds the
same addresses the same way (``SO_REUSEADDR``, every address the host name resolves to, as
asyncio's ``create_server`` does), releases them at once, and raises an error that says what
to do:

>>> import socket
>>> taken = socket.create_server(("127.0.0.1", 0))
>>> try:
...     check_listen("127.0.0.1", taken.getsockname()[1])
... except Conflict as exc:
...     print(exc.message.replace(str(taken.getsockname()[1]), "PORT"))
127.0.0.1:PORT is already in use; choose another with --port
>>> taken.close()

A port freed between the check and the server's own bind is taken by the server; one taken
in that instant still fails, the old way.
"""

from __future__ import annotations

import errno
import socket

from tvilling.core.errors import Conflict, Unavailable


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_listen(host: str, port: int) -> None:
    """Raise ``Conflict`` (``rule="port_in_use"``) when ``host:port`` is taken, ``Unavailable`` when it
    cannot be listened on for another reason (an address not of this machine, a privileged port)."""
    if port == 0:  # the system picks a free one
        return
    where = _where(host, port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise Unavailable(f"cannot listen on {where}: {exc.strerror}", host=host, port=port,
                          rule="unknown_host") from None
    for family, kind, proto, _name, address in set(infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise Conflict(f"{where} is already in use; choose another with --port", host=host, port=port,
                                   rule="port_in_use") from None
                raise Unavailable(f"cannot listen on {where}: {exc.strerror or exc}", host=host, port=port,
                                  rule="cannot_listen") from None
