"""Propose bindings from a server's address space by naming convention, for a person to confirm.

The convention: an object (folder) is a twin, named after its browse name; a variable
directly under it is a property (browse name in lower camel case: ``Temperature`` →
``temperature``, ``Spindle Speed`` → ``spindleSpeed``); a method under it is a command.
Nothing is bound by this module: :func:`propose_bindings` returns proposals, each with a
``note`` where a person should look twice (a renamed id, a clash, a type that cannot be
ingested), and :meth:`AutoMap.to_config` turns the accepted ones into config entries.

    async with OpcUaCommands({"endpoint": url}) as opc:
        proposal = await propose_bindings(opc, "Objects/2:Line1")
    for p in proposal.bindings:
        print(p.binding.twin, p.binding.property, p.path, p.note or "")
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec

from tvilling.connect.opcua.config import Binding, MethodBinding
from tvilling.connect.opcua.session import BrowseEntry
from tvilling.connect.opcua.translate import SUPPORTED

_SUPPORTED_NAMES = frozenset(t.name for t in SUPPORTED)
_TWIN_BAD = re.compile(r"[^A-Za-z0-9._:\-]+")
_WORD = re.compile(r"[A-Za-z0-9]+")


class Browser(Protocol):
    async def browse(self, path: str = ...) -> list[BrowseEntry]: ...


class Proposal(msgspec.Struct, frozen=True, kw_only=True):
    binding: Binding
    path: str
    data_type: str | None = None
    note: str | None = None


class MethodProposal(msgspec.Struct, frozen=True, kw_only=True):
    binding: MethodBinding
    path: str
    note: str | None = None


class AutoMap(msgspec.Struct, frozen=True, kw_only=True):
    bindings: list[Proposal]
    methods: list[MethodProposal]

    def to_config(self, *, accept_noted: bool = False) -> dict[str, Any]:
        """``{"bindings": [...], "methods": [...]}`` for the proposals without a note (or all of them)."""
        return {
            "bindings": [msgspec.to_builtins(p.binding) for p in self.bindings if accept_noted or p.note is None],
            "methods": [msgspec.to_builtins(m.binding) for m in self.methods if accept_noted or m.note is None],
        }


async def propose_bindings(browser: Browser, root: str = "Objects", *, sampling_ms: float = 100.0,
                           max_depth: int = 8) -> AutoMap:
    """Walk the subtree under ``root`` (standard namespace-0 objects such as ``Server`` are skipped)."""
    bindings: list[Proposal] = []
    methods: list[MethodProposal] = []
    stack: list[tuple[str, str | None, int]] = [(root, None, 0)]  # (path, twin name or None for the root, depth)
    while stack:
        path, object_name, depth = stack.pop(0)
        for entry in await browser.browse(path):
            if entry.node_class == "Object":
                if entry.namespace != 0 and depth < max_depth:
                    stack.append((entry.path, entry.name, depth + 1))
            elif object_name is not None and entry.node_class == "Variable":
                twin, twin_note = _twin_id(object_name)
                prop, prop_note = _member_name(entry.name)
                note = _join(twin_note, prop_note)
                if entry.data_type not in _SUPPORTED_NAMES:
                    note = _join(note, f"data type {entry.data_type or 'unknown'} cannot be ingested")
                elif entry.value_rank is not None and entry.value_rank >= 0:
                    note = _join(note, f"an array of {entry.data_type} cannot be ingested")
                bindings.append(Proposal(binding=Binding(node=entry.path, twin=twin, property=prop,
                                                         sampling_ms=sampling_ms),
                                         path=entry.path, data_type=entry.data_type, note=note))
            elif object_name is not None and entry.node_class == "Method":
                twin, twin_note = _twin_id(object_name)
                command, command_note = _member_name(entry.name)
                methods.append(MethodProposal(binding=MethodBinding(twin=twin, command=command,
                                                                    object=path, method=entry.path),
                                              path=entry.path, note=_join(twin_note, command_note)))
    return AutoMap(bindings=_flag_clashes(bindings), methods=methods)


def _twin_id(name: str) -> tuple[str, str | None]:
    twin = _TWIN_BAD.sub("-", name).strip("-._:")[:128] or "twin"
    return twin, None if twin == name else f"twin id {twin!r} made from {name!r}"


def _member_name(name: str) -> tuple[str, str | None]:
    words = _WORD.findall(name)
    if not words:
        return "value", f"no usable name in {name!r}"
    first = words[0]
    camel = first[:1].lower() + first[1:] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    if camel[0].isdigit():
        camel = "p" + camel
    camel = camel[:64]
    return camel, None if camel[:1].lower() + camel[1:] == name[:1].lower() + name[1:] else \
        f"name {camel!r} made from {name!r}"


def _flag_clashes(props: list[Proposal]) -> list[Proposal]:
    """Twin ids are global: the same folder name in two places (or a property twice) needs a person."""
    by_key: dict[tuple[str, str], list[int]] = {}
    folders: dict[str, set[str]] = {}
    for i, p in enumerate(props):
        by_key.setdefault((p.binding.twin, p.binding.property), []).append(i)
        folders.setdefault(p.binding.twin, set()).add(p.path.rsplit("/", 1)[0])
    out = []
    for p in props:
        note = p.note
        places = folders[p.binding.twin]
        if len(places) > 1:
            note = _join(note, f"twin id {p.binding.twin!r} comes from {len(places)} folders ({sorted(places)})")
        elif len(by_key[p.binding.twin, p.binding.property]) > 1:
            note = _join(note, f"property {p.binding.property!r} proposed twice for {p.binding.twin!r}")
        out.append(p if note == p.note else msgspec.structs.replace(p, note=note))
    return out


def _join(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None
