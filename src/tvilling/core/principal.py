"""Who acts: the principal behind every change to a twin.

Every write goes through one service call with a principal. Its ``id`` is what the
events record as their ``actor``. Until sign-in exists, people are known only by the
name they give (``authenticated`` is false); the platform's own workers act as
``system`` principals.

>>> Principal.system("ingest:mqtt").actor
'ingest:mqtt'
>>> Principal.of("alice").kind
'user'
"""

from __future__ import annotations

import msgspec

KINDS = frozenset({"user", "service", "device", "system"})
MAX_ID = 128


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A person, a service (API token), a device or a part of the platform itself."""

    id: str
    kind: str = "user"
    roles: tuple[str, ...] = ()
    authenticated: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"principal kind must be one of {sorted(KINDS)}, not {self.kind!r}")
        if not self.id or len(self.id) > MAX_ID:
            raise ValueError(f"a principal id is 1 to {MAX_ID} characters")

    @property
    def actor(self) -> str:
        """The name events record for this principal."""
        return self.id

    @classmethod
    def system(cls, name: str) -> Principal:
        """A part of the platform acting on its own (ingest, analytics, importer, upkeep)."""
        return cls(id=name, kind="system", roles=("system",), authenticated=True)

    @classmethod
    def of(cls, who: Principal | str) -> Principal:
        """``who`` as a principal: a bare name is an unauthenticated user of that name."""
        if isinstance(who, Principal):
            return who
        return cls(id=(who or "anonymous")[:MAX_ID], kind="user")
