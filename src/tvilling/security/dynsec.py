"""Mosquitto's dynamic security plugin: its control API over MQTT, and its initial configuration file.

The plugin (``mosquitto_dynamic_security.so``, shipped with Mosquitto 2) keeps clients (a username,
a hashed password, roles), roles (lists of ACLs) and the default access in one JSON file, and changes
them at run time on request: an admin client publishes ``{"commands": [...]}`` to
``$CONTROL/dynamic-security/v1`` and reads the answers on ``$CONTROL/dynamic-security/v1/response``.
:class:`DynsecClient` is that admin client (paho-mqtt, MQTT 5); :func:`initial_config` writes the
file a new broker starts from, holding only the admin.

Passwords are stored the plugin's way: PBKDF2-HMAC-SHA512 with a random salt, both base64.

>>> doc = initial_config("admin", "s3cret", iterations=1000)
>>> [c["username"] for c in doc["clients"]], doc["defaultACLAccess"]["publishClientSend"]
(['admin'], False)
>>> check_password(doc["clients"][0], "s3cret"), check_password(doc["clients"][0], "guess")
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import ssl
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from tvilling.connect.mqtt.port import BrokerAddress, parse_url
from tvilling.core.errors import Conflict, Forbidden, Invalid, NotFound, TvillingError, Unauthorized, Unavailable

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ADMIN_ROLE = "dynsec-admin"
#: PBKDF2 rounds for the admin written by :func:`initial_config` (the plugin itself hashes clients it
#: creates with its own, much lower count; the admin, the key to every device, gets more)
ADMIN_ITERATIONS = 100_000


def hash_password(password: str, *, iterations: int = ADMIN_ITERATIONS, salt: bytes | None = None) -> dict[str, Any]:
    """The ``password``, ``salt`` and ``iterations`` fields of a plugin client holding ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def check_password(client: dict[str, Any], password: str) -> bool:
    """Whether a plugin client entry (as in the JSON file) holds ``password``."""
    salt = base64.b64decode(client["salt"])
    expected = hash_password(password, iterations=int(client["iterations"]), salt=salt)["password"]
    return hmac.compare_digest(expected, client["password"])


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def initial_config(admin: str, password: str, *, iterations: int = ADMIN_ITERATIONS) -> dict[str, Any]:
    """The plugin's file for a new broker: one admin who may use the control API and nothing else.

    Everything else is denied by default (publishing, receiving, subscribing); devices and the
    server get their rights from the roles Tvilling provisions.
    """
    if not admin or not password:
        raise Invalid("the admin needs a username and a password", field="admin", rule="required")
    control = "$CONTROL/dynamic-security/#"
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
        "clients": [{"username": admin, "textname": "Tvilling broker admin (dynamic security only)",
                     "roles": [{"rolename": ADMIN_ROLE}], **hash_password(password, iterations=iterations)}],
        "groups": [],
        "roles": [{"rolename": ADMIN_ROLE, "acls": [_acl("publishClientSend", control),
                                                    _acl("publishClientReceive", control),
                                                    _acl("subscribePattern", control)]}],
    }


def write_initial_config(path: Path, admin: str, password: str, *, owner: str | None = None) -> None:
    """Write :func:`initial_config` to ``path`` (mode 0600, owned by ``owner`` when given); never overwrites."""
    text = json.dumps(initial_config(admin, password), indent=2) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Conflict(f"{path} exists already; the broker's clients live in it (delete it first to start over)",
                       path=str(path), rule="exists") from None
    except OSError as exc:
        raise Unavailable(f"cannot write {path}: {exc.strerror}", path=str(path)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if owner is not None:
        import shutil

        shutil.chown(path, owner, owner)


def describe(address: BrokerAddress) -> str:
    """The broker's address for messages and logs: never its credentials."""
    return f"{'mqtts' if address.tls else 'mqtt'}://{address.host}:{address.port}"


def error_for(response: dict[str, Any]) -> TvillingError | None:
    """The error of one plugin response (``None`` when it succeeded), as the project's error classes."""
    text = response.get("error")
    if not text:
        return None
    message = f"{response.get('command', 'command')}: {text}"
    lower = str(text).lower()
    if "already exists" in lower:
        return Conflict(message, rule="exists")
    if "not found" in lower:
        return NotFound(message)
    return Invalid(message, rule="dynsec")


class DynsecClient:
    """A synchronous admin connection to the plugin's control API.

    ``with DynsecClient("mqtt://admin:pw@127.0.0.1:1883") as ds: ds.run({"command": "listClients"})``.
    Errors name the broker by host and port only, never with its credentials.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0, ca_file: Path | None = None,
                 cert_file: Path | None = None, key_file: Path | None = None) -> None:
        self.address = parse_url(url)
        if not self.address.username or not self.address.password:
            raise Invalid(f"the broker admin's url ({describe(self.address)}) needs a username and password: "
                          "mqtt://ADMIN:PASSWORD@HOST:PORT", field="broker", rule="credentials")
        self.timeout_s = timeout_s
        self._tls = (ca_file, cert_file, key_file)
        self._client: Any = None
        self._lock = threading.Lock()
        self._waiting: dict[str, list[dict[str, Any]]] = {}
        self._arrived = threading.Condition(self._lock)
        self._acks: dict[int, Any] = {}

    # -- connection ---------------------------------------------------------------------------
    def __enter__(self) -> DynsecClient:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tvilling-dynsec-{uuid.uuid4().hex[:12]}",
                             protocol=paho.MQTTv5)
        client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            ca, cert, key = self._tls
            client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                           keyfile=str(key) if key else None, cert_reqs=ssl.CERT_REQUIRED)
        connected = threading.Event()
        outcome: dict[str, Any] = {}

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            outcome["reason"] = reason
            connected.set()

        def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
            outcome["suback"] = reasons
            connected.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        where = describe(self.address)
        try:
            client.connect(self.address.host, self.address.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise Unavailable(f"cannot reach the broker at {where}: {exc}", rule="broker") from None
        client.loop_start()
        self._client = client
        try:
            if not connected.wait(self.timeout_s):
                raise Unavailable(f"the broker at {where} did not answer the connection", rule="broker")
            reason = outcome["reason"]
            if reason.is_failure:
                raise Unauthorized(f"the broker at {where} refused the admin connection: {reason}",
                                   rule="broker_credentials")
            connected.clear()
            client.subscribe(RESPONSE_TOPIC, qos=1)
            if not connected.wait(self.timeout_s):
                raise Unavailable(f"the broker at {where} did not answer the subscription", rule="broker")
            if any(r.is_failure for r in outcome["suback"]):
                raise Forbidden(f"the user may not use the dynamic security API on {where}: is it the plugin's "
                                "admin, and is the plugin loaded (see deploy/mosquitto/tvilling-secure.conf)?",
                                rule="dynsec_admin")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    # -- commands -----------------------------------------------------------------------------
    def execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one request; their responses, in order (per-command errors are not raised)."""
        if self._client is None:
            raise Unavailable("the dynamic security client is not connected", rule="not_connected")
        tag = uuid.uuid4().hex
        tagged = [{**c, "correlationData": f"{tag}:{i}"} for i, c in enumerate(commands)]
        with self._lock:
            for i in range(len(commands)):
                self._waiting[f"{tag}:{i}"] = []
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        info.wait_for_publish(self.timeout_s)
        with self._lock:
            reason = self._acks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            self._forget(tag, len(commands))
            raise Forbidden(f"the broker refused the control request ({reason}): the user is not the plugin's admin",
                            rule="dynsec_admin")
        keys = [f"{tag}:{i}" for i in range(len(commands))]
        with self._arrived:
            done = self._arrived.wait_for(lambda: all(self._waiting[k] for k in keys), self.timeout_s)
            answers = [self._waiting.pop(k) for k in keys]
        if not done:
            raise Unavailable(f"no answer from the dynamic security plugin on {describe(self.address)} within "
                              f"{self.timeout_s:g} s: is the plugin loaded?", rule="dynsec_timeout")
        return [a[0] for a in answers]

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command; its ``data`` (or ``{}``), raising its error as a project error."""
        [response] = self.execute([command])
        error = error_for(response)
        if error is not None:
            raise error
        data = response.get("data")
        return data if isinstance(data, dict) else {}

    def _forget(self, tag: str, count: int) -> None:
        with self._lock:
            for i in range(count):
                self._waiting.pop(f"{tag}:{i}", None)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._lock:
            self._acks[mid] = reason

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        try:
            doc = json.loads(message.payload)
        except ValueError:
            return
        responses = doc.get("responses") if isinstance(doc, dict) else None
        if not isinstance(responses, list):
            return
        with self._arrived:
            for response in responses:
                if isinstance(response, dict) and response.get("correlationData") in self._waiting:
                    self._waiting[response["correlationData"]].append(response)
            self._arrived.notify_all()
