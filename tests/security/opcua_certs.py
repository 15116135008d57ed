"""OPC UA application certificates for tests, made with ``cryptography``.

An OPC UA application instance certificate (OPC 10000-6 §6.2.2) is RSA (Basic256Sha256 needs
2048–4096 bits), carries the application URI as a ``URI:`` subject alternative name, and allows
digital signature, non-repudiation, key and data encipherment, with the server or client
extended key usage. ``tls_certs`` makes ECDSA TLS certificates, which OPC UA cannot use.

    cert, key = make_app_certificate(tmp_path, "client", "urn:tvilling:test:client", server=False)

Self-signed (as most plant devices ship them) and valid for a day. Never use outside tests.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def make_app_certificate(folder: Path, stem: str, application_uri: str, *, server: bool,
                         hosts: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """Write ``folder/<stem>.der`` (certificate) and ``folder/<stem>.pem`` (PKCS#8 key); return their paths."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tvilling tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    alt += [x509.DNSName(h) for h in hosts]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                         data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.der", folder / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
