"""OPC UA client security: the endpoint's policy, mode, certificates and user, set through asyncua's own API.

:func:`secure_client` is called on a fresh ``Client`` before ``connect()``; :func:`refusal` turns
what a server answers when it will not have us (a rejected policy, an untrusted certificate,
wrong credentials) into an ``Unauthorized`` that says which and what to change. No crypto here:
asyncua signs and encrypts, ``cryptography`` only reads the certificate's application URI.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.client.client import Client, _first_cert_from_chain
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography.hazmat.primitives.serialization import Encoding

from tvilling.connect.opcua.config import OpcUaEndpoint
from tvilling.connect.opcua.status import status_name
from tvilling.core.errors import Invalid, TvillingError, Unauthorized

DEFAULT_APPLICATION_URI = "urn:tvilling:client"

#: what to tell the operator for the status codes a server refuses a client with
_ADVICE = {
    "BadUserAccessDenied": "the server refused the username/password (endpoint.username, endpoint.password)",
    "BadIdentityTokenRejected": "the server does not accept this kind of user identity (anonymous or "
                                "username/password): set endpoint.username and endpoint.password",
    "BadIdentityTokenInvalid": "the server could not read the user identity (endpoint.username, endpoint.password)",
    "BadCertificateUntrusted": "the server does not trust the client certificate (endpoint.certificate): add it to "
                               "the server's trusted certificates",
    "BadCertificateUriInvalid": "the client certificate's URI does not match the application URI "
                                "(endpoint.certificate)",
    "BadCertificateUseNotAllowed": "the client certificate lacks the key usages OPC UA needs (endpoint.certificate)",
    "BadCertificateTimeInvalid": "the client certificate is expired or not yet valid (endpoint.certificate)",
    "BadCertificateInvalid": "the server rejected the client certificate (endpoint.certificate)",
    "BadSecurityPolicyRejected": "the server does not offer this security policy (endpoint.security_policy)",
    "BadSecurityChecksFailed": "the server rejected the secure channel (endpoint.security_policy, "
                               "endpoint.certificate, endpoint.server_certificate)",
}


async def secure_client(client: Client, ep: OpcUaEndpoint) -> None:
    """Set the user and the security policy of ``ep`` on ``client`` (before it connects)."""
    if ep.username is not None:
        client.set_user(ep.username)
        client.set_password(ep.resolved_password() or "")
    if ep.policy == "None":
        return
    if ep.certificate is None or ep.private_key is None:  # validate_opcua_config refuses this already
        raise Invalid(f"opcua: security policy {ep.policy} needs endpoint.certificate and endpoint.private_key",
                      field="endpoint.certificate", rule="required")
    cert = await uacrypto.load_certificate(ep.certificate)
    client.application_uri = application_uri(cert) or DEFAULT_APPLICATION_URI
    policy = getattr(security_policies, f"SecurityPolicy{ep.policy}")
    mode = getattr(ua.MessageSecurityMode, ep.security_mode)
    endpoints = await client.connect_and_get_server_endpoints()  # over an unsecured channel, as the spec has it
    try:
        endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
    except UaError:
        raise Unauthorized(f"opcua connect: {ep.display_url} offers no {ep.policy} {ep.security_mode} endpoint "
                           f"(it offers {offered(endpoints)}); change endpoint.security_policy/security_mode",
                           endpoint=ep.display_url, field="endpoint.security_policy",
                           rule="policy_rejected") from None
    presented = _first_cert_from_chain(endpoint.ServerCertificate)
    if ep.server_certificate is not None:
        pinned = await uacrypto.load_certificate(ep.server_certificate)
        if pinned.public_bytes(Encoding.DER) != presented:
            raise Unauthorized(f"opcua connect: the certificate {ep.display_url} presents is not the one in "
                               f"endpoint.server_certificate ({ep.server_certificate})", endpoint=ep.display_url,
                               field="endpoint.server_certificate", rule="certificate_mismatch")
    await client.set_security(policy, ep.certificate, ep.private_key, ep.private_key_password,
                              uacrypto.CertProperties(presented, extension="der"), mode)


def application_uri(cert: Any) -> str | None:
    """The first ``URI:`` subject alternative name of a certificate (an OPC UA application's URI)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return str(uris[0]) if uris else None


def refusal(exc: BaseException, ep: OpcUaEndpoint) -> TvillingError | None:
    """An ``Unauthorized`` naming the server's reason when ``exc`` is a security refusal, else ``None``."""
    if isinstance(exc, UaError) and str(exc).startswith("No matching endpoints"):
        return Unauthorized(f"opcua connect: {ep.display_url} offers no {ep.policy} endpoint ({exc}); it needs "
                            "endpoint.security_policy and a client certificate", endpoint=ep.display_url,
                            field="endpoint.security_policy", rule="policy_rejected")
    if not isinstance(exc, UaStatusCodeError) or not isinstance(getattr(exc, "code", None), int):
        return None
    name = status_name(int(exc.code)).split(" ")[0]
    advice = _ADVICE.get(name)
    if advice is None:
        return None
    return Unauthorized(f"opcua connect to {ep.display_url} refused with {name}: {advice}", status=name,
                        status_code=f"0x{int(exc.code):08X}", endpoint=ep.display_url, action="connect")


def offered(endpoints: list[ua.EndpointDescription]) -> str:
    """A server's endpoints as ``Policy Mode`` words, for an error message."""
    words = {f"{e.SecurityPolicyUri.rpartition('#')[2]} {e.SecurityMode.name}" for e in endpoints}
    return ", ".join(sorted(words)) or "none"
