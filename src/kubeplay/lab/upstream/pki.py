"""A throwaway test CA and the loopback server/token-signing certificates the simulator uses."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeplay.state import atomic_write

VALIDITY = dt.timedelta(days=7)


@dataclass(frozen=True)
class TestPKI:
    """Paths of PEM files: the CA, one loopback server cert (127.0.0.1, ::1, localhost), one JWT signer."""

    ca_cert: Path
    ca_key: Path
    cert_dir: Path  # holds only ca.crt: the shape `skopeo --cert-dir` and containerd's certs.d expect
    server_cert: Path
    server_key: Path
    token_cert: Path
    token_key: Path


def _write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def _write_public(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubeplay lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def create_test_pki(directory: Path) -> TestPKI:
    """Write a fresh CA, a loopback server certificate and a token-signing certificate under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kubeplay lab test CA"))
        .issuer_name(_name("kubeplay lab test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue("127.0.0.1", server_key, ca_cert, ca_key, server=True)
    token_key = ec.generate_private_key(ec.SECP256R1())
    token_cert = _issue("kubeplay lab token signer", token_key, ca_cert, ca_key, server=False)

    pki = TestPKI(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        cert_dir=directory / "trust",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        token_cert=directory / "token.crt",
        token_key=directory / "token.key",
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write_public(pki.ca_cert, ca_pem)
    _write_private(pki.ca_key, _key_pem(ca_key))
    pki.cert_dir.mkdir(exist_ok=True)
    _write_public(pki.cert_dir / "ca.crt", ca_pem)
    # Full chain so clients that only trust the CA accept the leaf.
    _write_public(pki.server_cert, server_cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    _write_private(pki.server_key, _key_pem(server_key))
    _write_public(pki.token_cert, token_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pki.token_key, _key_pem(token_key))
    return pki


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key ID docker/libtrust (and so distribution's token auth `kid`) gives a public key.

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without padding, in 4-char groups
    joined by ':' (libtrust keyIDFromCryptoKey / keyIDEncode).
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def load_token_signer(pki: TestPKI) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The token-signing private key and its libtrust key ID."""
    key = serialization.load_pem_private_key(pki.token_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("token signing key is not an EC key")
    return key, libtrust_key_id(key.public_key())
