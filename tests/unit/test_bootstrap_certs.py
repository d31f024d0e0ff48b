"""Certificates: the SANs a node verifies against, key permissions, and what a domain/IP change re-issues."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

from cryptography import x509

from kubeplay.bootstrap import certs


def test_server_cert_names_domain_and_ips_and_chains_to_ca(tmp_path: Path) -> None:
    ca, made = certs.load_or_make_ca(tmp_path / "rootCA.crt", tmp_path / "rootCA.key")
    assert made
    assert certs.ensure_server_cert(
        ca, tmp_path / "domain.crt", tmp_path / "domain.key", "kube.registry.local", ["10.0.0.5", "10.0.0.5", "fd00::5"]
    )
    pem = (tmp_path / "domain.crt").read_bytes()
    assert certs.cert_names(pem) == (["kube.registry.local"], ["10.0.0.5", "fd00::5"])
    assert certs.signed_by(pem, ca.cert_pem)
    # Python's own TLS stack accepts the chain and the key: what a client with the CA will see.
    ctx = ssl.create_default_context(cafile=str(tmp_path / "rootCA.crt"))
    ctx.load_cert_chain(tmp_path / "domain.crt", tmp_path / "domain.key")
    cert = x509.load_pem_x509_certificate(pem)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_private_keys_are_0600_and_ca_lasts_ten_years(tmp_path: Path) -> None:
    ca, _ = certs.load_or_make_ca(tmp_path / "rootCA.crt", tmp_path / "rootCA.key")
    certs.ensure_server_cert(ca, tmp_path / "domain.crt", tmp_path / "domain.key", "r.example.local", ["10.0.0.1"])
    for key in ("rootCA.key", "domain.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "rootCA.crt").stat().st_mode) == 0o644
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    life = ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc
    assert life >= dt.timedelta(days=3650)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = x509.load_pem_x509_certificate((tmp_path / "domain.crt").read_bytes())
    assert server.not_valid_after_utc <= ca_cert.not_valid_after_utc


def test_rerun_keeps_everything_and_a_new_domain_reissues_only_the_server_cert(tmp_path: Path) -> None:
    paths = (tmp_path / "rootCA.crt", tmp_path / "rootCA.key")
    ca, _ = certs.load_or_make_ca(*paths)
    srv = (tmp_path / "domain.crt", tmp_path / "domain.key")
    certs.ensure_server_cert(ca, *srv, "a.example.local", ["10.0.0.1"])
    first = srv[0].read_bytes()
    ca2, made = certs.load_or_make_ca(*paths)
    assert not made and ca2.cert_pem == ca.cert_pem
    assert not certs.ensure_server_cert(ca2, *srv, "a.example.local", ["10.0.0.1"])
    assert srv[0].read_bytes() == first
    assert certs.ensure_server_cert(ca2, *srv, "b.example.local", ["10.0.0.1"])
    assert certs.cert_names(srv[0].read_bytes())[0] == ["b.example.local"]
    assert certs.ensure_server_cert(ca2, *srv, "b.example.local", ["10.0.0.2"])
    assert certs.cert_names(srv[0].read_bytes())[1] == ["10.0.0.2"]
    assert paths[0].read_bytes() == ca.cert_pem, "nodes that trust the CA keep trusting it"


def test_operator_certs_must_cover_the_domain(tmp_path: Path) -> None:
    ca, _ = certs.load_or_make_ca(tmp_path / "rootCA.crt", tmp_path / "rootCA.key")
    certs.ensure_server_cert(ca, tmp_path / "domain.crt", tmp_path / "domain.key", "other.example", ["10.0.0.1"])
    problems = certs.check_user_certs(
        tmp_path / "domain.crt", tmp_path / "domain.key", tmp_path / "rootCA.crt", "kube.registry.local"
    )
    assert problems == [
        f"{tmp_path / 'domain.crt'} does not name kube.registry.local in its subjectAltName (has: other.example)"
    ]
    missing = certs.check_user_certs(tmp_path / "x.crt", tmp_path / "domain.key", tmp_path / "rootCA.crt", "a.b")
    assert missing == [f"{tmp_path / 'x.crt'} is missing"]
