"""TLS for the HTTP API (server side) and for MQTT (client side): file checks and SSL contexts.

The API server's files are checked before it starts, so that a missing key, an unreadable
file or a key that does not belong to its certificate is one clear line, not a traceback
after the store opened (:func:`check_server_files`). MQTT clients get their
:class:`ssl.SSLContext` from :func:`client_context`: the broker's certificate is verified
against a CA file (or the system's trust store), optionally with a client certificate;
skipping the host-name check is refused for anything but a loopback broker.

>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("broker.example")
(True, True, False)
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from pathlib import Path

from tvilling.core.errors import Invalid

StrPath = str | os.PathLike[str]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``: only this machine can be behind it."""
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _readable(path: StrPath, what: str, field: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise Invalid(f"{what} {file}: no such file", field=field, rule="tls_file")
    try:
        with file.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise Invalid(f"{what} {file}: cannot be read ({exc.strerror})", field=field, rule="tls_file") from None


def check_server_files(cert: StrPath | None, key: StrPath | None, ca: StrPath | None = None) -> bool:
    """Check the HTTP server's TLS files; return whether TLS is on (a certificate was given).

    A certificate needs its key and the reverse; a client CA needs a certificate; each file
    must be readable, the key must match the certificate and the CA file must hold certificates.
    Raises :class:`~tvilling.core.errors.Invalid` (``rule="tls"`` or ``"tls_file"``) otherwise.
    """
    if cert is None and key is None:
        if ca is not None:
            raise Invalid("--tls-ca (client certificates) needs --tls-cert and --tls-key", field="tls_ca",
                          rule="tls")
        return False
    if cert is None or key is None:
        missing, given = ("--tls-key", "--tls-cert") if key is None else ("--tls-cert", "--tls-key")
        raise Invalid(f"{given} needs {missing} as well: TLS takes a certificate and its private key",
                      field=missing[2:].replace("-", "_"), rule="tls")
    _readable(cert, "TLS certificate", "tls_cert")
    _readable(key, "TLS key", "tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(os.fspath(cert), os.fspath(key))
    except ssl.SSLError as exc:
        raise Invalid(f"TLS certificate {cert} and key {key} cannot be used together: {exc.reason or exc}",
                      field="tls_key", rule="tls") from None
    if ca is not None:
        _readable(ca, "TLS client CA", "tls_ca")
        try:
            context.load_verify_locations(cafile=os.fspath(ca))
        except ssl.SSLError as exc:
            raise Invalid(f"TLS client CA {ca}: not a PEM certificate file ({exc.reason or exc})", field="tls_ca",
                          rule="tls") from None
    return True


def client_context(host: str, *, ca: StrPath | None = None, cert: StrPath | None = None,
                   key: StrPath | None = None, insecure: bool = False) -> ssl.SSLContext:
    """An SSL context for a client of ``host``: the server's chain verified against ``ca`` (default: the
    system's trust store), ``cert``/``key`` presented when given, the host name checked unless ``insecure``.

    ``insecure`` still verifies the chain; it is refused unless ``host`` is a loopback address, where a
    certificate made for the machine's public name may be met under ``127.0.0.1``.
    """
    if insecure and not is_loopback(host):
        raise Invalid(f"mqtt_tls_insecure (no host-name check) is refused for {host}: only a loopback broker may "
                      "skip it; give the broker a certificate that names it", field="mqtt_tls_insecure",
                      rule="tls")
    if (cert is None) != (key is None):
        raise Invalid("a client certificate (mqtt_cert) needs its key (mqtt_key) and the reverse",
                      field="mqtt_key" if key is None else "mqtt_cert", rule="tls")
    if ca is not None:
        _readable(ca, "MQTT CA", "mqtt_ca")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None if ca is None else os.fspath(ca))
    except ssl.SSLError as exc:
        raise Invalid(f"MQTT CA {ca}: not a PEM certificate file ({exc.reason or exc})", field="mqtt_ca",
                      rule="tls") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        _readable(cert, "MQTT client certificate", "mqtt_cert")
        _readable(key, "MQTT client key", "mqtt_key")
        try:
            context.load_cert_chain(os.fspath(cert), os.fspath(key))
        except ssl.SSLError as exc:
            raise Invalid(f"MQTT client certificate {cert} and key {key} cannot be used together: "
                          f"{exc.reason or exc}", field="mqtt_key", rule="tls") from None
    if insecure:
        context.check_hostname = False
    return context
