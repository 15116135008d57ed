"""Test certificates made with ``cryptography``: a CA, a server certificate for localhost/127.0.0.1, a client one.

    certs = make_certs(tmp_path / "tls")
    certs.ca, certs.server_cert, certs.server_key, certs.client_cert, certs.client_key   # PEM files

Keys are ECDSA P-256 (fast to make). Files are world-readable: Mosquitto, started as root by the tests,
reads them after dropping to its own user. Never use these outside tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Issuer:
    """A CA that signs certificates: its key and certificate, and the file of the certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path


@dataclass(frozen=True)
class TlsCerts:
    """The PEM files of one test PKI."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tvilling tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    return _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def make_ca(folder: Path, name: str = "Tvilling test CA", *, days: int = 30) -> Issuer:
    """A self-signed CA, written to ``folder/<name>.pem`` (spaces as dashes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    cert = (_builder(subject, subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    path = _write(folder / f"{name.replace(' ', '-')}.pem", cert.public_bytes(serialization.Encoding.PEM))
    return Issuer(key, cert, path)


def issue(issuer: Issuer, folder: Path, stem: str, common_name: str, *, server: bool,
          names: Sequence[str] = (), days: int = 30) -> tuple[Path, Path]:
    """A leaf certificate signed by ``issuer`` (server or client use; ``names`` as DNS/IP subject alt names);
    returns the paths of its certificate and key files, ``folder/<stem>.pem`` and ``folder/<stem>.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(_name(common_name), issuer.cert.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return (_write(folder / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM)),
            _write_key(folder / f"{stem}.key", key))


def make_certs(folder: Path, *, client_name: str = "device-1", server_names: Sequence[str] = SERVER_NAMES) -> TlsCerts:
    """A CA with a server certificate for ``server_names`` and a client certificate named ``client_name``."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    ca = make_ca(folder)
    server_cert, server_key = issue(ca, folder, "server", server_names[0], server=True, names=server_names)
    client_cert, client_key = issue(ca, folder, "client", client_name, server=False)
    return TlsCerts(ca.path, server_cert, server_key, client_cert, client_key)
