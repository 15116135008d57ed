"""What transports hand their messages to: the ingest sink, and the raw form kept for dead letters.

A transport (MQTT, OPC UA, HTTP, file replay) translates each raw message into envelopes
and calls :meth:`IngestSink.ingest`; when that returns, the readings are durably stored
(history and twin state), so only then may the transport acknowledge the message (for
MQTT QoS 1: send the PUBACK). A message the transport cannot even translate goes to
:meth:`IngestSink.reject` with its raw bytes and the reason: nothing disappears silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from tvilling.core.envelope import Envelope
from tvilling.ingest.deadletter import DeadLetter


class RawMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message as it arrived, kept with a rejection so it can be inspected and replayed."""

    transport: str  # "mqtt" | "opcua" | "http" | "replay"
    address: str | None = None  # MQTT topic, OPC UA node id, HTTP path, file name:line
    payload: bytes = b""
    received: datetime


class IngestResult(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int = 0  # readings stored
    rejected: int = 0  # readings sent to the dead-letter store
    duplicates: int = 0  # readings dropped as exact duplicates (same twin, property, time, value) or repeated ids
    flagged: int = 0  # readings stored with a quality flag (spike, late, stale)
    letters: tuple[DeadLetter, ...] = ()  # this call's dead letters (stored already): why readings were rejected


class IngestSink(Protocol):
    async def ingest(self, envelopes: Sequence[Envelope], *, raw: RawMessage | None = None,
                     origins: Sequence[RawMessage | None] | None = None) -> IngestResult:
        """Validate, clean and durably store; returns only when stored (or dead-lettered).

        ``origins`` (one per envelope, where the transport has them) are the raw messages the
        envelopes were read from; a rejection keeps its message's raw payload. Raises
        ``Unavailable`` when a store fails: then nothing of the batch counts as stored.
        """
        ...

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        """Store an untranslatable message in the dead-letter store."""
        ...
