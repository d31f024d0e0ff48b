"""The deploy node's CA and the registry's server certificate, made with `cryptography`.

The CA (10 years) is made once and kept across re-runs: nodes that already trust it keep working when
the registry domain or IP changes, because only the server certificate is re-issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeplay.errors import BadInput
from kubeplay.state import atomic_write

CA_DAYS = 3650
SERVER_DAYS = 3650 - 1
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(signs_certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certs,
        crl_sign=signs_certs,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = "kubeplay offline CA", now: dt.datetime | None = None) -> Issued:
    """A self-signed CA certificate valid for 10 years and its EC P-256 key (PEM)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubeplay"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certs=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def san_entries(domain: str, ips: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(domain)]
    for ip in dict.fromkeys(ips):
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    return names


def make_server_cert(ca: Issued, domain: str, ips: list[str], now: dt.datetime | None = None) -> Issued:
    """A server certificate for `domain` and `ips` (subjectAltName), signed by `ca`, never outliving it."""
    now = now or _now()
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BadInput("the kubeplay CA key is not an EC key", hint="remove /etc/kubeplay/certs and re-run install")
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(san_entries(domain, ips)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def cert_names(cert_pem: bytes) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) in a certificate's subjectAltName."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]


def expires(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def needs_renewal(cert_pem: bytes, now: dt.datetime | None = None) -> bool:
    return expires(cert_pem) - (now or _now()) < dt.timedelta(days=RENEW_BEFORE_DAYS)


def fingerprint(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_or_make_ca(cert_path: Path, key_path: Path) -> tuple[Issued, bool]:
    """The existing CA if both files are there and valid for 30 more days, else a new one (written, key 0600).

    Returns (ca, created).
    """
    if cert_path.exists() and key_path.exists():
        ca = Issued(cert_path.read_bytes(), key_path.read_bytes())
        if not needs_renewal(ca.cert_pem):
            return ca, False
    ca = make_ca()
    atomic_write(key_path, ca.key_pem, mode=0o600)
    atomic_write(cert_path, ca.cert_pem, mode=0o644)
    return ca, True


def ensure_server_cert(ca: Issued, cert_path: Path, key_path: Path, domain: str, ips: list[str]) -> bool:
    """Issue the server certificate unless the existing one matches domain, IPs and CA. True if (re)issued."""
    if cert_path.exists() and key_path.exists():
        current = cert_path.read_bytes()
        dns, addrs = cert_names(current)
        if (
            dns == [domain]
            and sorted(addrs) == sorted(dict.fromkeys(ips))
            and signed_by(current, ca.cert_pem)
            and not needs_renewal(current)
        ):
            return False
    issued = make_server_cert(ca, domain, ips)
    atomic_write(key_path, issued.key_pem, mode=0o600)
    atomic_write(cert_path, issued.cert_pem + ca.cert_pem, mode=0o644)
    return True


def check_user_certs(cert_path: Path, key_path: Path, ca_path: Path, domain: str) -> list[str]:
    """With generate_domain_crt: false, the operator's files must exist and cover the domain; return problems."""
    problems = [f"{p} is missing" for p in (cert_path, key_path, ca_path) if not p.exists()]
    if problems:
        return problems
    dns, _ = cert_names(cert_path.read_bytes())
    if domain not in dns and not any(d.startswith("*.") and domain.split(".", 1)[-1] == d[2:] for d in dns):
        problems.append(f"{cert_path} does not name {domain} in its subjectAltName (has: {', '.join(dns) or 'none'})")
    return problems
