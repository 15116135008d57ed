"""Decisions that act on assets: commands with a tracked lifecycle, desired-state reconciliation."""

from tvilling.decisions.commands import CommandService
from tvilling.decisions.feed import CommandFeedSource
from tvilling.decisions.lifecycle import STATUSES, CommandRecord, new_command, transition
from tvilling.decisions.reconcile import DesiredReconciler
from tvilling.decisions.store import CommandStore, MemoryCommandStore, open_command_store
from tvilling.decisions.transport import CommandTransport, OpcUaTransport, SupportsCall, device_status

__all__ = [
    "STATUSES",
    "CommandFeedSource",
    "CommandRecord",
    "CommandService",
    "CommandStore",
    "CommandTransport",
    "DesiredReconciler",
    "MemoryCommandStore",
    "OpcUaTransport",
    "SupportsCall",
    "device_status",
    "new_command",
    "open_command_store",
    "transition",
]
