"""API tokens for services and scripts: what a token is, how its secret is made and checked.

A token's secret is ``tvl_`` followed by 32 random bytes (URL-safe base64); it is shown once, when
the token is made, and only its SHA-256 hash is stored. The secret is high-entropy, so a fast hash
is right (there is nothing to brute-force), and hashes are compared in constant time. The ``tvl_``
prefix lets the authenticator tell a token from a JWT without trying both.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 3, 2, tzinfo=UTC)
>>> token, secret = mint("ci", "operator", twins="line-1-*", expires=now + timedelta(days=30), by="alice", now=now)
>>> secret.startswith(SECRET_PREFIX) and matches(secret, hash_secret(secret))
True
>>> token.covers("line-1-m01"), token.covers("line-2-m01")
(True, False)
>>> parse_duration("30d")
datetime.timedelta(days=30)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgspec

from tvilling.core.errors import Invalid, Unauthorized

if TYPE_CHECKING:
    from tvilling.backend.tokens import TokenStore

SECRET_PREFIX = "tvl_"
SECRET_BYTES = 32
ROLES = ("viewer", "operator", "engineer", "admin")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PATTERN = 256
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Token(msgspec.Struct, frozen=True, kw_only=True):
    """An API token as stored and listed: everything but its secret (of which only the hash is kept)."""

    id: str
    name: str
    role: str
    twins: str = "*"
    created: datetime
    created_by: str
    expires: datetime | None = None
    revoked: datetime | None = None
    last_used: datetime | None = None

    def covers(self, twin_id: str) -> bool:
        """Whether the token's twins pattern (an fnmatch glob, case-sensitive) includes ``twin_id``."""
        return fnmatchcase(twin_id, self.twins)

    def problem(self, now: datetime) -> str | None:
        """Why the token cannot be used at ``now`` (revoked, expired), or None when it can."""
        if self.revoked is not None:
            return f"the API token {self.name!r} was revoked"
        if self.expires is not None and self.expires <= now:
            return f"the API token {self.name!r} expired at {self.expires.isoformat()}"
        return None

    def to_json(self) -> dict[str, Any]:
        """The token as a JSON object (times as ISO 8601 strings)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of a token's secret: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def is_token(credential: str) -> bool:
    """Whether a bearer credential is an API token (rather than a JWT)."""
    return credential.startswith(SECRET_PREFIX)


def check_fields(name: str, role: str, twins: str) -> None:
    """``Invalid`` naming the field unless name, role and twins pattern are acceptable."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise Invalid("a token name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                      field="name", rule="pattern")
    if role not in ROLES:
        raise Invalid(f"role must be one of {list(ROLES)}; got {role!r}", field="role", rule="enum")
    if not isinstance(twins, str) or not twins or len(twins) > MAX_PATTERN:
        raise Invalid(f"the twins pattern is a glob of 1 to {MAX_PATTERN} characters (e.g. line-1-*)",
                      field="twins", rule="pattern")


def mint(name: str, role: str, *, twins: str = "*", expires: datetime | None = None, by: str,
         now: datetime) -> tuple[Token, str]:
    """A new token and its secret (shown once); ``Invalid`` for a bad name, role, pattern or expiry."""
    check_fields(name, role, twins)
    if expires is not None and expires <= now:
        raise Invalid("a token's expiry must be in the future", field="expires", rule="future")
    token = Token(id=uuid.uuid4().hex[:16], name=name, role=role, twins=twins, created=now, created_by=by,
                  expires=expires)
    return token, SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def issue(store: TokenStore, name: str, role: str, *, twins: str = "*", expires_in: str | None = None,
          by: str, now: datetime) -> tuple[Token, str]:
    """Make a token (expiring ``expires_in`` after ``now``, e.g. ``30d``; never when None), store its hash,
    and return it with its secret, which is not kept anywhere and cannot be shown again."""
    expires = None if expires_in is None else now + parse_duration(expires_in)
    token, secret = mint(name, role, twins=twins, expires=expires, by=by, now=now)
    store.add(token, hash_secret(secret))
    return token, secret


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` as a time span; ``Invalid`` otherwise."""
    found = _DURATION.match(text or "")
    if found is None or int(found.group(1)) == 0:
        raise Invalid(f"a duration is a positive number and a unit (s, m, h, d, w), e.g. 30d; got {text!r}",
                      field="expires", rule="duration")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def usable(token: Token | None, now: datetime) -> Token:
    """The token if it may be used at ``now``; ``Unauthorized`` with the reason otherwise."""
    if token is None:
        raise Unauthorized("unknown API token", rule="unknown_token")
    why = token.problem(now)
    if why is not None:
        raise Unauthorized(why, rule="revoked_token" if token.revoked is not None else "expired_token")
    return token


__all__ = ["ROLES", "SECRET_PREFIX", "Token", "check_fields", "hash_secret", "is_token", "issue", "matches", "mint",
           "parse_duration", "usable"]
