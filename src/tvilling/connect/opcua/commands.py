"""Twin → OPC UA: write a bound property, call the method bound to a twin command.

    async with OpcUaCommands(config) as commands:
        await commands.write("M1", "speedSetpoint", 1200)      # typed as the node's DataType
        result = await commands.call("M1", "setSpeed", [1200.0])  # → list of output arguments

A node's data type (and a method's argument list) is looked up once per connection. A
failed write or call raises the Tvilling error for its status code (``Invalid`` for
BadTypeMismatch/BadOutOfRange, ``Unauthorized`` for BadNotWritable/BadUserAccessDenied,
``NotFound`` for BadNodeIdUnknown, ``Unavailable`` for transport trouble, ``Conflict`` for
the rest) with ``status``/``status_code`` fields. Nothing is retried here: a call may not be
idempotent; reconciliation (``decisions/``) decides. A lost connection is re-opened by the
next call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaStatusCodeError

from tvilling.connect.opcua.config import Binding, MethodBinding, OpcUaConfig, load_opcua_config
from tvilling.connect.opcua.session import BrowseEntry, OpcUaSession
from tvilling.connect.opcua.status import status_error, status_name, translate_error
from tvilling.connect.opcua.values import argument_variant_type, to_variant
from tvilling.core.errors import Invalid, NotFound, TvillingError, Unavailable

log = logging.getLogger(__name__)


class _Method:
    def __init__(self, object_id: ua.NodeId, method_id: ua.NodeId, inputs: list[ua.Argument],
                 types: list[ua.VariantType], outputs: list[str]) -> None:
        self.object_id, self.method_id, self.inputs, self.types, self.outputs = (
            object_id, method_id, inputs, types, outputs)


class OpcUaCommands:
    """Write-back and method calls over one client connection (opened on enter, re-opened when lost)."""

    def __init__(self, config: OpcUaConfig | dict[str, Any]) -> None:
        self.config = load_opcua_config(config) if isinstance(config, dict) else config
        self._writes: dict[tuple[str, str], Binding] = {(b.twin, b.property): b for b in self.config.bindings}
        self._methods: dict[tuple[str, str], MethodBinding] = {(m.twin, m.command): m for m in self.config.methods}
        self._session: OpcUaSession | None = None
        self._lock = asyncio.Lock()
        self._targets: dict[tuple[str, str], tuple[ua.NodeId, ua.VariantType]] = {}
        self._resolved_methods: dict[tuple[str, str], _Method] = {}

    async def __aenter__(self) -> OpcUaCommands:
        await self._connected()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def browse(self, path: str = "Objects") -> list[BrowseEntry]:
        return await (await self._connected()).browse(path)

    async def write(self, twin: str, property: str, value: Any) -> None:
        """Write ``value`` to the node bound to ``twin.property``, encoded as that node's data type."""
        binding = self._writes.get((twin, property))
        if binding is None:
            raise NotFound(f"opcua: no binding for {twin}.{property}", twin=twin, property=property)
        session = await self._connected()
        try:
            target = self._targets.get((twin, property))
            if target is None:
                node_id = await session.resolve(binding.node)
                target = (node_id, await session.variant_type(node_id, binding.node))
                self._targets[twin, property] = target
            node_id, vtype = target
            variant = to_variant(value, vtype, field=f"{twin}.{property}")
            write = ua.WriteValue(NodeId=node_id, AttributeId=AttributeIds.Value,
                                  Value=ua.DataValue(Value=variant, StatusCode=None))
            results = await session.client.uaclient.write(ua.WriteParameters(NodesToWrite=[write]))
        except Exception as exc:
            raise await self._failed(exc, "write", twin=twin, property=property, node=binding.node) from exc
        if not results[0].is_good():
            raise status_error(results[0].value, "write", twin=twin, property=property, node=binding.node)

    async def call(self, twin: str, command: str, args: Sequence[Any] | Mapping[str, Any] | None = None) -> list[Any]:
        """Call the method bound to ``twin.command``; ``args`` positional or by input argument name.

        Returns the output arguments in order.
        """
        binding = self._methods.get((twin, command))
        if binding is None:
            raise NotFound(f"opcua: no method binding for command {twin}.{command}", twin=twin, command=command)
        session = await self._connected()
        try:
            method = self._resolved_methods.get((twin, command))
            if method is None:
                method = await self._resolve_method(session, binding)
                self._resolved_methods[twin, command] = method
            variants = self._arguments(method, args, f"{twin}.{command}")
            request = ua.CallMethodRequest(ObjectId=method.object_id, MethodId=method.method_id,
                                           InputArguments=variants)
            result = (await session.client.uaclient.call([request]))[0]
        except Exception as exc:
            raise await self._failed(exc, "call", twin=twin, command=command, method=binding.method) from exc
        if result.StatusCode.is_bad():
            bad = [f"{method.inputs[i].Name or i}: {status_name(code.value)}"
                   for i, code in enumerate(result.InputArgumentResults or []) if not code.is_good()]
            raise status_error(result.StatusCode.value, "call", twin=twin, command=command, method=binding.method,
                               arguments="; ".join(bad) or None)
        return [v.Value for v in result.OutputArguments or []]

    # -- internals -------------------------------------------------------------------------------------------

    async def _connected(self) -> OpcUaSession:
        async with self._lock:
            if self._session is not None and not self._session.lost.is_set():
                return self._session
            if self._session is not None:
                await self._session.close()
                self._session = None
            self._targets.clear()
            self._resolved_methods.clear()
            session = OpcUaSession(self.config.endpoint)
            await session.connect()
            self._session = session
            return session

    async def _failed(self, exc: Exception, action: str, **fields: Any) -> TvillingError:
        err = translate_error(exc, action, **fields)
        if isinstance(err, Unavailable) and self._session is not None:
            self._session.lost.set()  # re-open on the next call
        return err

    async def _resolve_method(self, session: OpcUaSession, binding: MethodBinding) -> _Method:
        object_id = await session.resolve(binding.object)
        method_id = await session.resolve(binding.method)
        node = session.client.get_node(method_id)
        inputs = await _argument_list(node, "InputArguments")
        outputs = [a.Name for a in await _argument_list(node, "OutputArguments")]
        types = []
        for a in inputs:
            if a.ValueRank >= 1:
                raise Invalid(f"opcua: method {binding.method} argument {a.Name!r} is an array; not supported",
                              twin=binding.twin, command=binding.command, rule="type")
            types.append(await argument_variant_type(session.client.get_node, a.DataType))
        return _Method(object_id, method_id, inputs, types, outputs)

    def _arguments(self, method: _Method, args: Sequence[Any] | Mapping[str, Any] | None,
                   where: str) -> list[ua.Variant]:
        names = [a.Name for a in method.inputs]
        if args is None:
            values: list[Any] = []
        elif isinstance(args, Mapping):
            unknown = sorted(set(args) - set(names))
            missing = [n for n in names if n not in args]
            if unknown or missing:
                raise Invalid(f"opcua: {where}: arguments are {names}" + (f"; unknown {unknown}" if unknown else "")
                              + (f"; missing {missing}" if missing else ""), field=where, rule="arguments")
            values = [args[n] for n in names]
        elif isinstance(args, str | bytes):
            raise Invalid(f"opcua: {where}: arguments must be a list or an object", field=where, rule="type")
        else:
            values = list(args)
        if len(values) != len(method.inputs):
            raise Invalid(f"opcua: {where} takes {len(method.inputs)} argument(s) {names}, got {len(values)}",
                          field=where, rule="arguments")
        return [to_variant(v, t, field=f"{where}({a.Name})") for v, t, a in zip(values, method.types, method.inputs,
                                                                               strict=True)]


async def _argument_list(method_node: Any, name: str) -> list[ua.Argument]:
    try:
        prop = await method_node.get_child(f"0:{name}")
    except UaStatusCodeError:
        return []  # a method without arguments has no such property
    value = await prop.read_value()
    return list(value or [])
