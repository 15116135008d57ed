"""OPC UA connection settings and bindings (node → twin property, twin command → method).

Loaded from a decoded TOML/JSON document and validated once, with errors that name the field:

>>> cfg = load_opcua_config({
...     "endpoint": "opc.tcp://127.0.0.1:4840/plant",
...     "bindings": [{"node": "Objects/Line1/M1/Bearing1/Temperature", "twin": "B1", "property": "temperature"},
...                  {"node": "ns=2;s=M1.Speed", "twin": "M1", "property": "speed", "deadband": 0.5}],
...     "methods": [{"twin": "M1", "command": "setSpeed", "object": "Objects/Line1/M1",
...                  "method": "Objects/Line1/M1/SetSpeed"}],
... })
>>> cfg.bindings[0].sampling_ms, cfg.bindings[1].deadband
(100.0, 0.5)
>>> load_opcua_config({"endpoint": "http://x", "bindings": []})
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: opcua: endpoint.url must start with opc.tcp:// (got 'http://x')

A node is either an OPC UA node id string (``ns=2;s=Line1.M1.Speed``, ``ns=2;i=1001``,
``i=2258``, ``nsu=urn:plant;s=…``) or a browse path from the Root node whose segments are
browse names, optionally qualified with a namespace index (``Objects/2:Line1/M1/Speed``).

Security (``[endpoint]`` keys): ``security_policy`` (``None``, ``Basic256Sha256``,
``Aes128Sha256RsaOaep``, ``Aes256Sha256RsaPss``; underscores allowed), ``security_mode``
(``Sign`` | ``SignAndEncrypt``), ``certificate`` + ``private_key`` (the client's PEM or DER
files; its application URI is read from the certificate), ``server_certificate`` (pins the
server's), ``username`` + ``password``, or ``password_env`` naming the environment variable
that holds the password. Files and the variable are checked here, before any connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from tvilling.core.errors import Invalid, TvillingError
from tvilling.core.ids import check_twin_id

SECURITY_POLICIES = ("None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
SECURITY_MODES = ("Sign", "SignAndEncrypt")
_NODE_ID = re.compile(r"^(?:ns=|nsu=|[isgb]=)")  # anything else is a browse path
_SEGMENT = re.compile(r"^(?:(\d+):)?(.+)$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_]{0,62}[A-Za-z0-9])?$")  # a DTDL content name


class OpcUaEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how to connect. ``security_policy`` other than ``"None"`` needs a client certificate and key."""

    url: str
    security_policy: str = "None"
    security_mode: str = "SignAndEncrypt"
    certificate: str | None = None  # client certificate (.der or .pem)
    private_key: str | None = None  # client private key (.pem or .der)
    private_key_password: str | None = None
    server_certificate: str | None = None  # when absent, taken from the server's endpoint description
    username: str | None = None
    password: str | None = None
    password_env: str | None = None  # the environment variable holding the password (instead of ``password``)
    timeout_s: float = 4.0  # per request

    def __repr__(self) -> str:
        secret = "***" if self.password is not None else None
        return f"OpcUaEndpoint(url={self.display_url!r}, security_policy={self.security_policy!r}, " \
               f"username={self.username!r}, password={secret!r})"

    @property
    def policy(self) -> str:
        """The security policy's canonical name (``Aes128_Sha256_RsaOaep`` → ``Aes128Sha256RsaOaep``)."""
        return self.security_policy.replace("_", "")

    def resolved_password(self) -> str | None:
        """``password``, or the value of the variable named by ``password_env`` (``Invalid`` when unset)."""
        if self.password_env is None:
            return self.password
        value = os.environ.get(self.password_env)
        if value is None:
            raise Invalid(f"opcua: endpoint.password_env names {self.password_env!r}, which is not set",
                          field="endpoint.password_env", rule="required")
        return value

    @property
    def display_url(self) -> str:
        """The URL without any ``user:password@`` part, safe for logs and envelope sources."""
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}"


class Binding(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One OPC UA variable feeding one twin property."""

    node: str
    twin: str
    property: str
    sampling_ms: float = 100.0
    deadband: float | None = None  # absolute deadband: changes smaller than this are not reported


class MethodBinding(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One OPC UA method implementing one twin command; ``object`` is the node the method is called on."""

    twin: str
    command: str
    object: str
    method: str


class OpcUaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything one OPC UA connection needs; see :func:`load_opcua_config`."""

    endpoint: OpcUaEndpoint
    bindings: list[Binding] = msgspec.field(default_factory=list)
    methods: list[MethodBinding] = msgspec.field(default_factory=list)
    publishing_ms: float = 100.0  # the subscription's publishing interval
    item_queue_size: int = 10  # server-side queue per monitored item (values between two publishes)
    max_notifications_per_publish: int = 10_000
    batch_ms: float = 5.0  # notifications arriving within this window go to the sink in one call
    batch_max: int = 10_000  # ... and at most this many per call
    queue_max: int = 64  # publish messages buffered between the OPC UA client and the sink
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    drain_timeout_s: float = 10.0  # on close: how long to wait for buffered notifications to reach the sink
    source: str | None = None  # envelope source; defaults to "opcua:" + the endpoint URL

    @property
    def envelope_source(self) -> str:
        return (self.source or f"opcua:{self.endpoint.display_url}")[:256]


def load_opcua_config(doc: Mapping[str, Any] | OpcUaConfig) -> OpcUaConfig:
    """Read and validate a config document; ``endpoint`` may be a URL string or a table."""
    if isinstance(doc, OpcUaConfig):
        return validate_opcua_config(doc)
    if not isinstance(doc, Mapping):
        raise Invalid("opcua: config must be a table/object", field="opcua", rule="type")
    data = dict(doc)
    if isinstance(data.get("endpoint"), str):
        data["endpoint"] = {"url": data["endpoint"]}
    try:
        cfg = msgspec.convert(data, OpcUaConfig)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rpartition(" - at `$.")[2].rstrip("`") if " - at `$." in text else "opcua"
        raise Invalid(f"opcua: {text}", field=path, rule="schema") from None
    return validate_opcua_config(cfg)


def validate_opcua_config(cfg: OpcUaConfig) -> OpcUaConfig:
    ep = cfg.endpoint
    if not ep.url.startswith("opc.tcp://") or len(ep.url) <= len("opc.tcp://"):
        raise Invalid(f"opcua: endpoint.url must start with opc.tcp:// (got {ep.display_url!r})",
                      field="endpoint.url", rule="format")
    if ep.policy not in SECURITY_POLICIES:
        raise Invalid(f"opcua: endpoint.security_policy must be one of {list(SECURITY_POLICIES)}",
                      field="endpoint.security_policy", rule="enum")
    if ep.security_mode not in SECURITY_MODES:
        raise Invalid(f"opcua: endpoint.security_mode must be one of {list(SECURITY_MODES)}",
                      field="endpoint.security_mode", rule="enum")
    if ep.policy != "None" and not (ep.certificate and ep.private_key):
        raise Invalid(f"opcua: security policy {ep.security_policy} needs endpoint.certificate and "
                      "endpoint.private_key", field="endpoint.certificate", rule="required")
    if ep.password is not None and ep.password_env is not None:
        raise Invalid("opcua: give endpoint.password or endpoint.password_env, not both", field="endpoint.password",
                      rule="exclusive")
    if (ep.username is None) != (ep.password is None and ep.password_env is None):
        raise Invalid("opcua: endpoint.username and endpoint.password (or password_env) go together",
                      field="endpoint.username", rule="required")
    ep.resolved_password()
    for key in ("certificate", "private_key", "server_certificate"):
        path = getattr(ep, key)
        if path is not None and not os.path.isfile(path):
            raise Invalid(f"opcua: endpoint.{key}: no such file {path!r}", field=f"endpoint.{key}", rule="exists")
    _positive(ep.timeout_s, "endpoint.timeout_s")
    for name in ("publishing_ms", "batch_ms", "reconnect_min_s", "reconnect_max_s", "drain_timeout_s"):
        _positive(getattr(cfg, name), name, allow_zero=name == "batch_ms")
    for name in ("item_queue_size", "max_notifications_per_publish", "batch_max", "queue_max"):
        if getattr(cfg, name) < 1:
            raise Invalid(f"opcua: {name} must be at least 1", field=name, rule="minimum")
    seen: dict[tuple[str, str], int] = {}
    for i, b in enumerate(cfg.bindings):
        where = f"bindings[{i}]"
        _check_node(b.node, f"{where}.node")
        _check_ids(b.twin, b.property, where, "property")
        _positive(b.sampling_ms, f"{where}.sampling_ms", allow_zero=True)
        if b.deadband is not None:
            _positive(b.deadband, f"{where}.deadband", allow_zero=True)
        if (b.twin, b.property) in seen:
            first = seen[b.twin, b.property]
            raise Invalid(f"opcua: {where} binds {b.twin}.{b.property} again (first in bindings[{first}])",
                          field=where, rule="duplicate", twin=b.twin)
        seen[b.twin, b.property] = i
    commands: dict[tuple[str, str], int] = {}
    for i, m in enumerate(cfg.methods):
        where = f"methods[{i}]"
        _check_node(m.object, f"{where}.object")
        _check_node(m.method, f"{where}.method")
        _check_ids(m.twin, m.command, where, "command")
        if (m.twin, m.command) in commands:
            raise Invalid(f"opcua: {where} binds command {m.twin}.{m.command} again", field=where,
                          rule="duplicate", twin=m.twin)
        commands[m.twin, m.command] = i
    return cfg


def is_node_id(spec: str) -> bool:
    """True for an OPC UA node id string, False for a browse path."""
    return bool(_NODE_ID.match(spec))


def path_segments(path: str) -> list[tuple[int | None, str]]:
    """Split a browse path into (namespace index or None, name) segments.

    >>> path_segments("/Objects/2:Line1/M1")
    [(None, 'Objects'), (2, 'Line1'), (None, 'M1')]
    """
    out: list[tuple[int | None, str]] = []
    for part in path.strip("/").split("/"):
        if not part:
            raise Invalid(f"opcua: browse path {path!r} has an empty segment", field="node", rule="format")
        m = _SEGMENT.match(part)
        ns, name = (m.group(1), m.group(2)) if m else (None, part)
        out.append((int(ns) if ns is not None else None, name))
    return out


def _check_node(spec: str, field: str) -> None:
    if not spec.strip():
        raise Invalid(f"opcua: {field} is empty", field=field, rule="required")
    if is_node_id(spec):
        from asyncua import ua  # local: config stays importable without touching the client stack

        try:
            ua.NodeId.from_string(spec)
        except Exception as exc:
            raise Invalid(f"opcua: {field}: {spec!r} is not a valid node id ({exc})", field=field,
                          rule="format") from None
    else:
        try:
            path_segments(spec)
        except TvillingError as exc:
            raise Invalid(exc.message, field=field, rule="format") from None


def _check_ids(twin: str, name: str, where: str, what: str) -> None:
    try:
        check_twin_id(twin, field=f"{where}.twin")
    except TvillingError as exc:
        raise Invalid(f"opcua: {where}.twin {twin!r} is not a valid twin id ({exc.message})", field=f"{where}.twin",
                      rule="format") from None
    if not _NAME.match(name):
        raise Invalid(f"opcua: {where}.{what} {name!r} must be a name: a letter, then letters, digits or _ "
                      "(at most 64, not ending in _)", field=f"{where}.{what}", rule="format", twin=twin)


def _positive(value: float, field: str, *, allow_zero: bool = False) -> None:
    if not (value > 0 or (allow_zero and value == 0)) or value != value or value == float("inf"):
        raise Invalid(f"opcua: {field} must be {'zero or ' if allow_zero else ''}a positive number (got {value})",
                      field=field, rule="minimum")
