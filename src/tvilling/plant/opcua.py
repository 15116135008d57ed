"""The plant's machines as an OPC UA server (asyncua, the optional ``opcua`` extra; imported lazily).

Address space (namespace ``urn:tvilling:plant``): ``Objects/<line>/<machine>/<machine>-de`` …
— one object per twin, named by its twin id, the machine's bearings and spindle inside it.
Each signal is a Double variable named by its path (``speed``, ``motor.current``,
``vibrationBandBpfo``…) with the string node id ``ns=<ns>;s=<twin>.<path>``; the machine's
``state`` is a String. ``speedSetpoint`` is writable: a client's write is obeyed like
``setSpeed``. Methods on each machine object: ``setSpeed(rpm: Double)``, ``stop()``,
``start()``, ``maintenanceDone()``, ``runJob(order: String, op: Int32, quantity: Int32)``,
each returning ``(accepted: Boolean, state: String)``; a refused call returns
``BadInvalidArgument`` (bad rpm, bad job) or ``BadInvalidState`` (start or runJob while in
fault, a full job queue). The machine's job (``job``, ``lastJob``: String; ``jobProgress``,
``partsDone``, ``jobsCompleted``, ``jobsQueued``: Double) and each bearing's ``partNumber``
(String) and ``installDate`` (DateTime) are variables too.

    plant = Plant(machines=2, seed=1, speed=60)
    async with PlantOpcUaServer(plant, interval=1.0) as server:   # steps the plant itself
        print(server.url, server.node_id("line-1-m01", "motor.current"))

With ``interval=None`` it only shows what it is given: pass ``server.update`` as the
``on_frame`` hook of a :class:`~tvilling.plant.mqtt.PlantRunner` to serve both protocols.

Secured like a plant's controller: with ``security=OpcUaServerSecurity(...)`` it offers only
the given policies (by default Basic256Sha256 SignAndEncrypt, no unsecured endpoint), presents
its own application certificate, accepts only client certificates found in the ``trusted``
folders (asyncua's trust store) and, when ``users`` is given, only those usernames and passwords
(anonymous sessions are then refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tvilling.core.errors import Invalid, Unavailable
from tvilling.plant.broker import LOOPBACK, free_port
from tvilling.plant.plant import CommandResult, Frame, Plant

if TYPE_CHECKING:
    from asyncua.common.node import Node
    from asyncua.server.server import Server

log = logging.getLogger("tvilling.plant.opcua")

NAMESPACE = "urn:tvilling:plant"
#: the machine's job properties (Machine;4) and the bearing's fitted part (Bearing;5), beside the signals
JOB_PATHS = ("job", "jobProgress", "partsDone", "jobsCompleted", "jobsQueued", "lastJob")
PART_PATHS = ("partNumber", "installDate")
_TEXT = frozenset({"state", "job", "lastJob", "partNumber"})


@dataclass(frozen=True)
class OpcUaServerSecurity:
    """What the plant's OPC UA server demands of a client (see the module docstring)."""

    certificate: Path  # the server's application certificate (DER or PEM); its URI SAN is ``application_uri``
    private_key: Path
    application_uri: str = "urn:tvilling:plant:server"
    #: asyncua ``SecurityPolicyType`` names offered, e.g. ``Basic256Sha256_Sign``, ``Aes256Sha256RsaPss_SignAndEncrypt``
    policies: Sequence[str] = ("Basic256Sha256_SignAndEncrypt",)
    trusted: Sequence[Path] = ()  # folders of trusted client (or CA) certificates; empty: any valid certificate
    users: Mapping[str, str] = field(default_factory=dict)  # username -> password; empty: anonymous allowed


class _PasswordUsers:
    """An asyncua user manager: a session's username and password must match one of ``users``."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        expected = self.users.get(username or "")
        if expected is None or password is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None  # asyncua answers BadUserAccessDenied
        return User(role=UserRole.User, name=username)


async def _secure(server: Any, security: OpcUaServerSecurity) -> None:
    """Apply ``security`` to an initialised, not yet started asyncua server."""
    ua = _asyncua().ua
    from asyncua.crypto.truststore import TrustStore
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

    try:
        policies = [getattr(ua.SecurityPolicyType, name) for name in security.policies]
    except AttributeError as exc:
        raise Invalid(f"unknown OPC UA security policy {exc.name!r}", field="policies", rule="enum") from None
    await server.set_application_uri(security.application_uri)
    await server.load_certificate(str(security.certificate))
    await server.load_private_key(str(security.private_key))
    server.set_security_policy(policies)
    options = CertificateValidatorOptions.EXT_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
    store = None
    if security.trusted:
        store = TrustStore([Path(p) for p in security.trusted], [])
        await store.load()
        options |= CertificateValidatorOptions.TRUSTED
    server.set_certificate_validator(CertificateValidator(options, store))
    if security.users:
        server.iserver.user_manager = _PasswordUsers(security.users)
        server.set_identity_tokens([ua.UserNameIdentityToken])


def _asyncua() -> Any:
    try:
        import asyncua
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise Unavailable("the plant's OPC UA server needs asyncua: pip install 'tvilling[opcua]'",
                          package="asyncua") from exc
    return asyncua


class PlantOpcUaServer:
    """Serves ``plant``'s twins over OPC UA on ``opc.tcp://host:port/tvilling/plant`` (port 0: a free one)."""

    def __init__(self, plant: Plant, *, port: int = 0, host: str = LOOPBACK, interval: float | None = None,
                 namespace: str = NAMESPACE, security: OpcUaServerSecurity | None = None) -> None:
        if interval is not None and not interval > 0:
            raise Invalid("interval must be > 0 seconds (or None)", field="interval", rule="range")
        self.plant = plant
        self.host = host
        self.port = port
        self.interval = interval
        self.namespace = namespace
        self.security = security
        self.ns = 0
        self._server: Server | None = None
        self._vars: dict[tuple[str, str], Node] = {}
        self._shown_setpoint: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.frames = 0

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/tvilling/plant"

    def node_id(self, twin: str, path: str) -> str:
        return f"ns={self.ns};s={twin}.{path}"

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> PlantOpcUaServer:
        ua = _asyncua().ua
        if self.port == 0:
            self.port = free_port(self.host)
        server = _asyncua().Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"Tvilling simulated plant {self.plant.line}")
        if self.security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await _secure(server, self.security)
        self.ns = await server.register_namespace(self.namespace)
        await self._build(server)
        try:
            await server.start()
        except Exception as exc:
            raise Unavailable(f"OPC UA server could not listen on {self.host}:{self.port}: {exc}",
                              endpoint=self.url) from None
        self._server = server
        if self.interval is not None:
            self._task = asyncio.create_task(self._run(self.interval), name=f"plant-opcua-{self.plant.line}")
        log.info("plant %s served over OPC UA at %s", self.plant.line, self.url)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def _run(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.update(self.plant.step(interval))
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())

    # -------------------------------------------------------------- address space

    async def _build(self, server: Server) -> None:
        ua = _asyncua().ua
        ns, plant = self.ns, self.plant
        first: dict[str, dict[str, Any]] = {}  # zeros until the first frame (reading now would use the seed's draws)
        line = await server.nodes.objects.add_object(ua.NodeId(plant.line, ns), ua.QualifiedName(plant.line, ns))
        await self._variables(line, plant.line, {})
        double = ua.NodeId(ua.ObjectIds.Double)
        for i, ids in enumerate(plant.part_ids):
            machine = ids[0]
            obj = await line.add_object(ua.NodeId(machine, ns), ua.QualifiedName(machine, ns))
            await self._variables(obj, machine, first.get(machine, {}))
            await self._vars[machine, "speedSetpoint"].set_writable()
            self._shown_setpoint[i] = 0.0  # what the node shows until the first frame
            for twin in ids[1:]:
                child = await obj.add_object(ua.NodeId(twin, ns), ua.QualifiedName(twin, ns))
                await self._variables(child, twin, first.get(twin, {}))
            outputs = [ua.Argument(Name="accepted", DataType=ua.NodeId(ua.ObjectIds.Boolean), ValueRank=-1),
                       ua.Argument(Name="state", DataType=ua.NodeId(ua.ObjectIds.String), ValueRank=-1)]
            rpm = [ua.Argument(Name="rpm", DataType=double, ValueRank=-1)]
            string, int32 = ua.NodeId(ua.ObjectIds.String), ua.NodeId(ua.ObjectIds.Int32)
            job = [ua.Argument(Name="order", DataType=string, ValueRank=-1),
                   ua.Argument(Name="op", DataType=int32, ValueRank=-1),
                   ua.Argument(Name="quantity", DataType=int32, ValueRank=-1)]
            for name, inputs in (("setSpeed", rpm), ("stop", []), ("start", []), ("maintenanceDone", []),
                                 ("runJob", job)):
                await obj.add_method(ua.NodeId(f"{machine}.{name}", ns), ua.QualifiedName(name, ns),
                                     self._method(machine, name), inputs, outputs)

    async def _variables(self, parent: Node, twin: str, values: dict[str, Any]) -> None:
        ua = _asyncua().ua
        from tvilling.plant.signals import PARTS, STATES, part_columns

        if twin == self.plant.line:
            paths = ["throughput", "machinesRunning"]
        else:
            suffix = next((p for p in PARTS[1:] if twin.endswith(f"-{p}")), "")
            paths = [path for _, path in part_columns(suffix)]
            paths += ["state", *JOB_PATHS] if not suffix else list(PART_PATHS) if suffix in ("de", "nde") else []
        for path in paths:
            value = values.get(path)
            if path == "state":
                state = STATES[int(self.plant.m.state[self.plant.machine_index(twin)])]
                variant = ua.Variant(state, ua.VariantType.String)
            elif path in _TEXT:
                variant = ua.Variant("", ua.VariantType.String)
            elif path == "installDate":
                variant = ua.Variant(datetime(1970, 1, 1), ua.VariantType.DateTime)
            else:
                variant = ua.Variant(float(value) if value is not None else 0.0, ua.VariantType.Double)
            node = await parent.add_variable(ua.NodeId(f"{twin}.{path}", self.ns), ua.QualifiedName(path, self.ns),
                                             variant)
            self._vars[twin, path] = node

    def _method(self, machine: str, name: str) -> Any:
        ua = _asyncua().ua

        async def call(parent: Any, *args: Any) -> list[Any]:
            request: Any = args[0].Value if args else None
            if name == "runJob":
                request = dict(zip(("order", "op", "quantity"), (a.Value for a in args), strict=False))
            result: CommandResult = self.plant.handle(machine, name, request)
            if not result.ok:
                code = ua.StatusCodes.BadInvalidState if result.status == 409 else ua.StatusCodes.BadInvalidArgument
                raise ua.UaStatusCodeError(code)
            return [ua.Variant(bool(result.payload["accepted"]), ua.VariantType.Boolean),
                    ua.Variant(str(result.payload["state"]), ua.VariantType.String)]

        return call

    # -------------------------------------------------------------- values

    async def update(self, frame: Frame) -> None:
        """Show one frame: obey setpoints written by clients since the last one, then write every value."""
        server = self._server
        if server is None:
            return
        ua = _asyncua().ua
        for i, machine in enumerate(self.plant.machine_ids):
            node = self._vars[machine, "speedSetpoint"]
            written = await node.read_value()
            if isinstance(written, int | float) and written != self._shown_setpoint[i]:
                result = self.plant.handle(machine, "setSpeed", float(written))
                if not result.ok:
                    log.warning("OPC UA write of %s.speedSetpoint=%r refused: %s", machine, written, result.payload)
        for twin, values in frame.records():
            for path, value in values.items():
                target = self._vars.get((twin, path))
                if target is None:
                    continue
                if path == "installDate" and isinstance(value, str):
                    variant = ua.Variant(datetime.fromisoformat(value.replace("Z", "+00:00")),
                                         ua.VariantType.DateTime)
                elif isinstance(value, str):
                    variant = ua.Variant(value, ua.VariantType.String)
                elif isinstance(value, int | float) and math.isfinite(value):
                    variant = ua.Variant(float(value), ua.VariantType.Double)
                else:
                    continue
                await server.write_attribute_value(target.nodeid, ua.DataValue(variant))
                if path == "speedSetpoint":  # what the node shows now, to tell a client's write from ours
                    self._shown_setpoint[self.plant.machine_index(twin)] = variant.Value
        self.frames += 1
