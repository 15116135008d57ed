"""Commands to devices over MQTT, their responses, and retained desired state.

Topics (``{twin}`` is the twin id, ``{name}`` the command name):

* ``tvilling/{twin}/commands/{name}`` — a command, QoS 1, payload ``{"id": <request id>,
  "request": <payload>}``, with the MQTT 5 properties *response topic*
  ``tvilling/{twin}/commands/{name}/response`` and *correlation data* = the request id
  (MQTT 3.1.1 devices use the ``id`` in the payload and answer on that topic);
* ``tvilling/{twin}/commands/{name}/response`` — the device's answer, payload
  ``{"id"?: …, "status": <int or str>, "payload"?: …}``; the request id is the correlation
  data if present, else ``id``;
* ``tvilling/{twin}/desired`` — the desired state, retained, so a device that connects
  later still gets it; an empty retained message clears it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import msgspec

from tvilling.connect.mapping import TopicPattern
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.port import Inbound, MqttTransport, SessionOptions, TlsFiles, TransportFactory, parse_url
from tvilling.core.errors import Invalid

log = logging.getLogger("tvilling.connect.mqtt.commands")

RESPONSES = TopicPattern.parse("tvilling/{twin}/commands/{name}/response")

#: ``(twin, name, request_id, status, payload)``
ResponseCallback = Callable[[str, str, str, Any, Any], Awaitable[None] | None]


def command_topic(twin: str, name: str) -> str:
    _check_level(twin, "twin")
    _check_level(name, "name")
    return f"tvilling/{twin}/commands/{name}"


def desired_topic(twin: str) -> str:
    _check_level(twin, "twin")
    return f"tvilling/{twin}/desired"


def _check_level(value: str, field: str) -> None:
    if not isinstance(value, str) or not value or any(c in value for c in "/+#\x00"):
        raise Invalid(f"{field} {value!r} cannot be an MQTT topic level (no '/', '+', '#')", field=field,
                      rule="topic")


class MqttCommands:
    """Sends commands and desired state to devices; delivers their responses to ``on_response``.

    ``async with MqttCommands(url, on_response=cb) as commands: await commands.send(...)``.
    """

    def __init__(self, url: str = "mqtt://127.0.0.1:1883", *, client_id: str | None = None,
                 on_response: ResponseCallback | None = None, session_expiry_s: int = 24 * 3600,
                 transport_factory: TransportFactory | None = None, tls_files: TlsFiles | None = None) -> None:
        self.on_response = on_response
        self.options = SessionOptions(client_id=client_id or f"tvilling-commands-{uuid.uuid4().hex[:12]}",
                                      clean_start=False, session_expiry_s=session_expiry_s, receive_maximum=100)
        subscriptions = [(RESPONSES.subscription, 1)] if on_response is not None else []
        factory = transport_factory or GmqttTransport
        self.transport: MqttTransport = factory(parse_url(url, tls_files), self.options, subscriptions,
                                                self._on_message)

    async def __aenter__(self) -> MqttCommands:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.transport.__aexit__(exc_type, exc, tb)

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        """Publish a command (QoS 1); returns when the broker has accepted it."""
        if not isinstance(request_id, str) or not request_id:
            raise Invalid("request_id must be a non-empty string", field="request_id", rule="required")
        topic = command_topic(twin, name)
        body = msgspec.json.encode({"id": request_id, "request": payload})
        await self.transport.publish(topic, body, qos=1, response_topic=f"{topic}/response",
                                     correlation_data=request_id.encode())

    async def publish_desired(self, twin: str, desired: dict[str, Any] | None) -> None:
        """Publish the desired state retained; ``None`` or ``{}`` clears the retained message."""
        body = msgspec.json.encode(desired) if desired else b""
        await self.transport.publish(desired_topic(twin), body, qos=1, retain=True)

    async def _on_message(self, msg: Inbound) -> bool:
        variables = RESPONSES.match(msg.topic)
        if variables is None or self.on_response is None:
            return True
        try:
            doc = msgspec.json.decode(msg.payload) if msg.payload else {}
        except msgspec.DecodeError:
            doc = None
        if not isinstance(doc, dict):
            log.warning("command response on %r is not a JSON object; dropped", msg.topic)
            return True
        request_id: Any = msg.correlation_data.decode("utf-8", "replace") if msg.correlation_data else doc.get("id")
        if request_id is None:
            log.warning("command response on %r has no correlation data and no 'id'; dropped", msg.topic)
            return True
        result = self.on_response(variables["twin"], variables["name"], str(request_id), doc.get("status"),
                                  doc.get("payload"))
        if result is not None:
            await result
        return True
