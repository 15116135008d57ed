"""OPC UA transport: subscriptions in (:class:`OpcUaIngest`), writes and method calls out (:class:`OpcUaCommands`).

Translates between OPC UA data values / method calls and the canonical envelope; no business
logic. Config: :func:`load_opcua_config`. Address-space helpers: ``browse(path)`` on both
classes, and :func:`propose_bindings` to suggest bindings for a person to confirm.
"""

from tvilling.connect.opcua.automap import AutoMap, MethodProposal, Proposal, propose_bindings
from tvilling.connect.opcua.commands import OpcUaCommands
from tvilling.connect.opcua.config import Binding, MethodBinding, OpcUaConfig, OpcUaEndpoint, load_opcua_config
from tvilling.connect.opcua.ingest import OpcUaIngest, OpcUaIngestStats
from tvilling.connect.opcua.session import BrowseEntry, OpcUaSession

__all__ = [
    "AutoMap", "Binding", "BrowseEntry", "MethodBinding", "MethodProposal", "OpcUaCommands", "OpcUaConfig",
    "OpcUaEndpoint", "OpcUaIngest", "OpcUaIngestStats", "OpcUaSession", "Proposal", "load_opcua_config",
    "propose_bindings",
]
