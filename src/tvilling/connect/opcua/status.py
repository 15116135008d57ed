"""OPC UA status codes: their quality (good / uncertain / bad) and the Tvilling error they become.

>>> quality_of(0x00000000), quality_of(0x40900000), quality_of(0x808D0000)
('good', 'uncertain', 'bad')
>>> err = status_error(0x80740000, "write", node="ns=2;s=Speed")  # BadTypeMismatch
>>> type(err).__name__, err.fields["status"]
('Invalid', 'BadTypeMismatch')
"""

from __future__ import annotations

import asyncio
from typing import Any

from asyncua import ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from tvilling.core.errors import Conflict, Invalid, NotFound, TvillingError, Unauthorized, Unavailable

OVERFLOW_BIT = 0x0080  # InfoBits: the server's monitored-item queue overflowed and it discarded values

_NOT_FOUND = {"BadNodeIdUnknown", "BadNodeIdInvalid", "BadMethodInvalid", "BadNoMatch", "BadBrowseNameInvalid",
              "BadAttributeIdInvalid", "BadObjectDeleted"}
_DENIED = {"BadUserAccessDenied", "BadNotWritable", "BadNotReadable", "BadNotExecutable", "BadIdentityTokenRejected",
           "BadIdentityTokenInvalid", "BadSecurityChecksFailed", "BadCertificateUntrusted", "BadCertificateInvalid",
           "BadSecurityPolicyRejected", "BadUserSignatureInvalid", "BadNoValidCertificates"}
_INVALID = {"BadTypeMismatch", "BadOutOfRange", "BadInvalidArgument", "BadArgumentsMissing", "BadTooManyArguments",
            "BadWriteNotSupported", "BadFilterNotAllowed", "BadDeadbandFilterInvalid", "BadMonitoredItemFilterInvalid",
            "BadIndexRangeInvalid", "BadDataEncodingInvalid"}
_UNAVAILABLE = {"BadTimeout", "BadCommunicationError", "BadServerNotConnected", "BadConnectionClosed", "BadShutdown",
                "BadServerHalted", "BadTooManySessions", "BadSessionClosed", "BadSessionIdInvalid",
                "BadSecureChannelClosed", "BadResourceUnavailable", "BadTcpServerTooBusy", "BadServerTooBusy",
                "BadNotConnected", "BadDisconnect", "BadRequestTimeout"}


def quality_of(code: int) -> str:
    """The severity bits (30–31) of a status code as an envelope quality."""
    severity = (code >> 30) & 0b11
    return "good" if severity == 0 else "uncertain" if severity == 1 else "bad"


def status_name(code: int) -> str:
    name = ua.StatusCode(ua.UInt32(code & 0xFFFF0000)).name
    return name if name not in ("Good", "Uncertain", "Bad") or code & 0x0FFF0000 == 0 else f"{name} (0x{code:08X})"


def status_error(code: int, action: str, **fields: Any) -> TvillingError:
    """The error for a Bad status returned by ``action`` (``write``, ``call``, ``subscribe`` …)."""
    name = status_name(code)
    base = name.split(" ")[0]
    what = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    message = f"opcua {action} failed with {name}" + (f" ({what})" if what else "")
    cls: type[TvillingError]
    if base in _NOT_FOUND:
        cls = NotFound
    elif base in _DENIED:
        cls = Unauthorized
    elif base in _INVALID:
        cls = Invalid
    elif base in _UNAVAILABLE:
        cls = Unavailable
    else:
        cls = Conflict  # the device refused in its current state (e.g. BadInvalidState, BadInternalError)
    return cls(message, status=base, status_code=f"0x{code:08X}", action=action, **fields)


def translate_error(exc: BaseException, action: str, **fields: Any) -> TvillingError:
    """Map an exception raised by asyncua at the adapter boundary to a Tvilling error (others are re-raised)."""
    if isinstance(exc, TvillingError):
        return exc
    if isinstance(exc, UaStatusCodeError) and isinstance(getattr(exc, "code", None), int):
        return status_error(int(exc.code), action, **fields)
    if isinstance(exc, ConnectionError | OSError | asyncio.TimeoutError | TimeoutError):
        what = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return Unavailable(f"opcua {action}: server unreachable ({exc.__class__.__name__}: {exc})"
                           + (f" ({what})" if what else ""), action=action, **fields)
    if isinstance(exc, UaError):
        return Unavailable(f"opcua {action} failed: {exc.__class__.__name__}: {exc}", action=action, **fields)
    raise exc  # not a protocol or transport error: a bug, let it surface as is
