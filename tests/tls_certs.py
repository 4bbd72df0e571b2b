"""Test certificates made on the spot: a root CA, an intermediate CA, and a server certificate for
127.0.0.1 and localhost. The server's PEM file is a "fullchain" (server, then intermediate), the
way ACME clients write it; clients trust only the root."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path  # the root CA certificate clients trust
    cert: Path  # server certificate + intermediate (MICS_TLS_CERT)
    key: Path  # server key (MICS_TLS_KEY)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
           ca: bool, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    root_key, mid_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _issue("MICS test root", root_key, "MICS test root", root_key, ca=True)
    mid = _issue("MICS test intermediate", mid_key, "MICS test root", root_key, ca=True)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _issue("localhost", server_key, "MICS test intermediate", mid_key, ca=False, sans=sans)
    pem = serialization.Encoding.PEM
    pki = Pki(directory / "ca.pem", directory / "fullchain.pem", directory / "server-key.pem")
    pki.ca.write_bytes(root.public_bytes(pem))
    pki.cert.write_bytes(server.public_bytes(pem) + mid.public_bytes(pem))
    pki.key.write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki
