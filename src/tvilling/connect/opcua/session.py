"""One connection to an OPC UA server: connect (security, user), resolve node specs, browse.

Shared by :class:`~tvilling.connect.opcua.ingest.OpcUaIngest` and
:class:`~tvilling.connect.opcua.commands.OpcUaCommands`; it owns no reconnect policy: it
reports a lost connection through :attr:`OpcUaSession.lost` and its owner decides.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

import msgspec
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from tvilling.connect.opcua.config import OpcUaEndpoint, is_node_id, path_segments
from tvilling.connect.opcua.security import refusal, secure_client
from tvilling.connect.opcua.status import translate_error
from tvilling.core.errors import Invalid, NotFound, Unavailable

log = logging.getLogger(__name__)



class BrowseEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One child of a browsed node."""

    name: str  # browse name, without the namespace index
    path: str  # browse path usable as a binding's ``node`` (``Objects/Line1/M1/Speed``)
    node_id: str  # e.g. ``ns=2;i=7``
    node_class: str  # ``Object``, ``Variable``, ``Method`` …
    namespace: int
    data_type: str | None = None  # variables only: the VariantType it encodes to (``Double``, ``Int32`` …)
    value_rank: int | None = None  # variables only: -1 scalar, 0 or more: an array (-2, -3: either)


class OpcUaSession:
    """An asyncua ``Client`` with Tvilling's config, error translation and path resolution.

    ``async with OpcUaSession(endpoint) as s: await s.browse("Objects")``
    """

    def __init__(self, endpoint: OpcUaEndpoint) -> None:
        self.endpoint = endpoint
        self.lost = asyncio.Event()  # set when the connection drops (or the server ends the session)
        self._client: Client | None = None
        self._paths: dict[str, ua.NodeId] = {}

    @property
    def client(self) -> Client:
        if self._client is None or self.lost.is_set():
            url = self.endpoint.display_url
            raise Unavailable(f"opcua: not connected to {url}", endpoint=url)
        return self._client

    async def __aenter__(self) -> OpcUaSession:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        ep = self.endpoint
        client = Client(ep.url, timeout=ep.timeout_s, watchdog_intervall=max(ep.timeout_s / 4, 0.25))
        client.name = client.description = "Tvilling"
        client.application_uri = "urn:tvilling:client"
        client.connection_lost_callback = self._on_lost
        try:
            await secure_client(client, ep)
            await client.connect()
        except BaseException as exc:
            await _quiet_disconnect(client)
            if isinstance(exc, Exception):
                raise (refusal(exc, ep) or translate_error(exc, "connect", endpoint=ep.display_url)) from exc
            raise
        self._client = client
        self.lost.clear()
        self._paths.clear()
        log.info("opcua: connected to %s", ep.display_url)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quiet_disconnect(client)

    async def _on_lost(self, exc: Exception) -> None:
        log.warning("opcua: connection to %s lost: %r", self.endpoint.display_url, exc)
        self.lost.set()

    async def resolve(self, spec: str) -> ua.NodeId:
        """The node id for a node id string or a browse path (``Objects/Line1/M1/Speed``)."""
        if is_node_id(spec):
            node_id = ua.NodeId.from_string(spec)
            if isinstance(node_id, ua.ExpandedNodeId) and node_id.NamespaceUri:
                try:
                    index = await self.client.get_namespace_index(node_id.NamespaceUri)
                except ValueError:
                    raise NotFound(f"opcua: namespace {node_id.NamespaceUri!r} of {spec!r} is not on the server",
                                   node=spec) from None
                except Exception as exc:
                    raise translate_error(exc, "resolve", node=spec) from exc
                return ua.NodeId(node_id.Identifier, ua.Int16(index), node_id.NodeIdType)
            return node_id
        current = ua.NodeId(ua.Int32(ObjectIds.RootFolder))
        walked: list[str] = []
        for ns, name in path_segments(spec):
            walked.append(f"{ns}:{name}" if ns is not None else name)
            key = "/".join(walked)
            cached = self._paths.get(key)
            if cached is not None:
                current = cached
                continue
            matches = [d for d in await self._children(current, spec)
                       if d.BrowseName.Name == name and (ns is None or d.BrowseName.NamespaceIndex == ns)]
            if not matches:
                parent = "/".join(walked[:-1]) or "Root"
                raise NotFound(f"opcua: browse path {spec!r}: no child {name!r} under {parent}", node=spec)
            if len(matches) > 1:
                options = ", ".join(f"{d.BrowseName.NamespaceIndex}:{name}" for d in matches)
                raise Invalid(f"opcua: browse path {spec!r}: {name!r} is ambiguous ({options}); qualify it as "
                              "'<namespace index>:<name>'", node=spec, rule="ambiguous")
            current = matches[0].NodeId
            self._paths[key] = current
        return current

    async def browse(self, path: str = "Objects") -> list[BrowseEntry]:
        """The children of the node at ``path`` (browse path or node id), variables with their data type."""
        node_id = await self.resolve(path)
        children = await self._children(node_id, path)
        base = path.strip("/") if not is_node_id(path) else path
        entries: list[BrowseEntry] = []
        variables = [d.NodeId for d in children if d.NodeClass == ua.NodeClass.Variable]
        types = await self._variant_types(variables) if variables else {}
        ranks = await self._value_ranks(variables) if variables else {}
        for d in children:
            nid = ua.NodeId(d.NodeId.Identifier, d.NodeId.NamespaceIndex, d.NodeId.NodeIdType)
            entries.append(BrowseEntry(
                name=d.BrowseName.Name,
                path=f"{base}/{_segment(d.BrowseName)}",
                node_id=nid.to_string(),
                node_class=d.NodeClass.name,
                namespace=d.BrowseName.NamespaceIndex,
                data_type=types.get(nid),
                value_rank=ranks.get(nid),
            ))
        return entries

    async def variant_type(self, node_id: ua.NodeId, spec: str) -> ua.VariantType:
        """The VariantType a value of this variable is written with (Double, Float, Int32 …)."""
        try:
            return await self.client.get_node(node_id).read_data_type_as_variant_type()
        except Exception as exc:
            raise translate_error(exc, "read data type", node=spec) from exc

    async def _variant_types(self, node_ids: list[ua.NodeId]) -> dict[ua.NodeId, str]:
        out: dict[ua.NodeId, str] = {}
        for nid in node_ids:
            try:
                out[nid] = (await self.client.get_node(nid).read_data_type_as_variant_type()).name
            except Exception:  # a type we cannot map (structure, abstract): browse still lists the node
                log.debug("opcua: no variant type for %s", nid, exc_info=True)
        return out

    async def _value_ranks(self, node_ids: list[ua.NodeId]) -> dict[ua.NodeId, int]:
        try:
            values = await self.client.uaclient.read_attributes(node_ids, AttributeIds.ValueRank)
        except Exception as exc:
            raise translate_error(exc, "browse") from exc
        return {nid: dv.Value.Value for nid, dv in zip(node_ids, values, strict=True)
                if dv.Value is not None and isinstance(dv.Value.Value, int)}

    async def _children(self, node_id: ua.NodeId, spec: str) -> list[ua.ReferenceDescription]:
        node = self.client.get_node(node_id)
        try:
            return list(await node.get_children_descriptions(refs=ObjectIds.HierarchicalReferences))
        except Exception as exc:
            raise translate_error(exc, "browse", node=spec) from exc


def _segment(name: ua.QualifiedName) -> str:
    return name.Name if name.NamespaceIndex == 0 else f"{name.NamespaceIndex}:{name.Name}"


async def _quiet_disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), timeout=5)
    except Exception:
        log.debug("opcua: disconnect raised", exc_info=True)
