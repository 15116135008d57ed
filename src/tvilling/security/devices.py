"""Device identities in the MQTT broker: one client and one role per device, provisioned by Tvilling.

A device is a client of Mosquitto's dynamic security plugin (username = the device's name) holding
one role, ``tvilling-device-<name>``, whose ACLs follow the topic layout of
:mod:`tvilling.connect.mqtt` for each of its twins ``T``:

* publish ``tvilling/T/telemetry`` (readings) and ``tvilling/T/commands/+/response`` (answers);
* subscribe to and receive ``tvilling/T/commands/+`` (commands) and ``tvilling/T/desired``.

Nothing else: with the plugin's default access denied (see :func:`~tvilling.security.dynsec.initial_config`),
device B's publication on A's topics is refused by the broker (MQTT 5: PUBACK "not authorized"), and
so is B's subscription to A's commands (SUBACK "not authorized"). A command's answer can therefore
come only from a device provisioned for that twin. The Tvilling server connects as a client holding
``tvilling-server``: it reads every topic under ``tvilling/`` and sends commands and desired state.
Removing a device deletes its client (the broker disconnects it at once) and its role.

>>> [(a["acltype"], a["topic"]) for a in device_acls(["pump-7"])][:2]
[('publishClientSend', 'tvilling/pump-7/telemetry'), ('publishClientSend', 'tvilling/pump-7/commands/+/response')]
>>> device_acls(["a/b"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: twin 'a/b' may only contain ASCII letters, digits and . _ : - ...
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tvilling.core.errors import Conflict, Invalid, NotFound
from tvilling.core.ids import check_twin_id

DEVICE_ROLE_PREFIX = "tvilling-device-"
SERVER_ROLE = "tvilling-server"
DEVICE_TEXT = "Tvilling device"
SERVER_TEXT = "Tvilling server"
#: what the server reads by default: every topic of the layout (telemetry, answers)
SERVER_READ = ("tvilling/#",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TELEMETRY = re.compile(r"tvilling/([^/]+)/telemetry")


class Control(Protocol):
    """What provisioning needs of the plugin: :class:`~tvilling.security.dynsec.DynsecClient` fits it."""

    def run(self, command: dict[str, Any]) -> dict[str, Any]: ...

    def execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Device:
    """A provisioned device: its broker username and the twins it speaks for."""

    name: str
    twins: tuple[str, ...]
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "twins": list(self.twins), "disabled": self.disabled}


def check_name(name: str, what: str = "device") -> str:
    """A device or server username: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Invalid(f"{what} name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                      "letter or digit", field=what, rule="format")
    return name


def check_twins(twins: Iterable[str]) -> tuple[str, ...]:
    """Twin ids, each a valid twin id (so a single, wildcard-free topic level), without duplicates."""
    out: list[str] = []
    for twin in twins:
        check_twin_id(twin, field="twin")
        if twin not in out:
            out.append(twin)
    if not out:
        raise Invalid("a device needs at least one twin", field="twins", rule="required")
    return tuple(out)


def _allow(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def device_acls(twins: Sequence[str]) -> list[dict[str, Any]]:
    """The ACLs of a device speaking for ``twins`` (see the module's docstring)."""
    acls: list[dict[str, Any]] = []
    for twin in check_twins(twins):
        base = f"tvilling/{twin}"
        acls += [_allow("publishClientSend", f"{base}/telemetry"),
                 _allow("publishClientSend", f"{base}/commands/+/response")]
        for topic in (f"{base}/commands/+", f"{base}/desired"):
            acls += [_allow("subscribePattern", topic), _allow("publishClientReceive", topic)]
    return acls


def server_acls(read: Sequence[str] = SERVER_READ) -> list[dict[str, Any]]:
    """The ACLs of the Tvilling server: read ``read`` (topic filters), send commands and desired state."""
    acls: list[dict[str, Any]] = []
    for topic in read:
        if not topic or topic.startswith("$"):
            raise Invalid(f"topic filter {topic!r} cannot be read by the server", field="read", rule="topic")
        acls += [_allow("subscribePattern", topic), _allow("publishClientReceive", topic)]
        # a shared subscription (--shared-group) is checked on its full filter
        acls.append(_allow("subscribePattern", f"$share/+/{topic}"))
    acls += [_allow("publishClientSend", "tvilling/+/commands/+"), _allow("publishClientSend", "tvilling/+/desired")]
    return acls


def device_role(name: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{check_name(name)}"


def new_password() -> str:
    """A generated device password: 32 random URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def add_device(control: Control, name: str, twins: Sequence[str], *,
               password: str | None = None) -> tuple[Device, str]:
    """Create the device's client and role; returns it and its password (generated unless given).

    Raises ``Conflict`` if a client of that name exists (devices and the server share one namespace).
    """
    role = device_role(name)
    acls = device_acls(twins)
    if password is not None and len(password) < 12:
        raise Invalid("a device password needs at least 12 characters", field="password", rule="length")
    secret = password if password is not None else new_password()
    if _client(control, name) is not None:
        raise Conflict(f"a broker client named {name!r} exists already", rule="exists")
    # a role left behind by an interrupted add would make createRole fail: it belongs to no client, drop it
    control.execute([{"command": "deleteRole", "rolename": role}])
    control.run({"command": "createRole", "rolename": role, "textname": f"{DEVICE_TEXT} {name}", "acls": acls})
    try:
        control.run({"command": "createClient", "username": name, "password": secret,
                     "textname": DEVICE_TEXT, "roles": [{"rolename": role}]})
    except BaseException:
        control.execute([{"command": "deleteRole", "rolename": role}])
        raise
    return Device(name, check_twins(twins)), secret


def remove_device(control: Control, name: str) -> None:
    """Delete the device's client (the broker disconnects it) and its role; ``NotFound`` if there is none."""
    role = device_role(name)
    client = _client(control, name)
    if client is None or not _is_device(client):
        raise NotFound(f"no device {name!r} on the broker")
    control.run({"command": "deleteClient", "username": name})
    control.execute([{"command": "deleteRole", "rolename": role}])


def list_devices(control: Control) -> list[Device]:
    """Every provisioned device with its twins (read back from its role's ACLs), by name."""
    clients = control.run({"command": "listClients", "verbose": True, "count": -1}).get("clients", [])
    roles = control.run({"command": "listRoles", "verbose": True, "count": -1}).get("roles", [])
    acls = {r.get("rolename"): r.get("acls", []) for r in roles if isinstance(r, dict)}
    out = []
    for client in clients:
        if not isinstance(client, dict) or not _is_device(client):
            continue
        name = str(client["username"])
        twins = []
        for acl in acls.get(f"{DEVICE_ROLE_PREFIX}{name}", []):
            match = _TELEMETRY.fullmatch(str(acl.get("topic", "")))
            if acl.get("acltype") == "publishClientSend" and match:
                twins.append(match.group(1))
        out.append(Device(name, tuple(twins), disabled=bool(client.get("disabled", False))))
    return sorted(out, key=lambda d: d.name)


def add_server(control: Control, name: str, *, password: str | None = None,
               read: Sequence[str] = SERVER_READ) -> str:
    """Create a client for the Tvilling server (ingest and commands) holding ``tvilling-server``.

    The role is made on first use; later calls add the ``read`` filters it lacks. Returns the password.
    """
    check_name(name, "server")
    acls = server_acls(read)
    secret = password if password is not None else new_password()
    if _client(control, name) is not None:
        raise Conflict(f"a broker client named {name!r} exists already", rule="exists")
    [created] = control.execute([{"command": "createRole", "rolename": SERVER_ROLE, "textname": SERVER_TEXT,
                                  "acls": acls}])
    if created.get("error"):
        have = control.run({"command": "getRole", "rolename": SERVER_ROLE}).get("role", {}).get("acls", [])
        present = {(a.get("acltype"), a.get("topic")) for a in have}
        for acl in acls:
            if (acl["acltype"], acl["topic"]) not in present:
                control.run({"command": "addRoleACL", "rolename": SERVER_ROLE, **acl})
    control.run({"command": "createClient", "username": name, "password": secret, "textname": SERVER_TEXT,
                 "roles": [{"rolename": SERVER_ROLE}]})
    return secret


def _client(control: Control, name: str) -> dict[str, Any] | None:
    try:
        client = control.run({"command": "getClient", "username": name}).get("client")
    except NotFound:
        return None
    return client if isinstance(client, dict) else {}


def _is_device(client: dict[str, Any]) -> bool:
    name = client.get("username")
    return any(isinstance(r, dict) and r.get("rolename") == f"{DEVICE_ROLE_PREFIX}{name}"
               for r in client.get("roles", []))
