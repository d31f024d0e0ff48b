"""Signed bundles: SSHSIG made by kubeplay verifies with the real ssh-keygen and back; what is refused, and why."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bundle.allowed_signers import parse_allowed_signers
from kubeplay.bundle.manifest import SIGNATURE_NAME, SUMS_NAME, write_sha256sums
from kubeplay.bundle.pack import pack_checked_bundle
from kubeplay.bundle.trust import NAMESPACE, generate_key, load_private_key, sign_bundle, sign_file
from kubeplay.bundle.verify import verify_bundle
from kubeplay.errors import BadInput, UntrustedBundle

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import KUBEADM, flip_byte, make_bundle

REPO = Path(__file__).resolve().parents[2]
SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen (openssh-client) not installed")


def _kubeplay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )


def _allowed(path: Path, *entries: tuple[str, Path], options: str = f'namespaces="{NAMESPACE}"') -> Path:
    lines = [f"{principal} {options} {' '.join(pub.read_text().split()[:2])}\n" for principal, pub in entries]
    path.write_text("# who may sign kubeplay bundles\n" + "".join(lines))
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture(params=["ed25519", "ecdsa"])
def key(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "keys" / f"builder-{request.param}"
    generate_key(path, "builder@example", str(request.param))
    return path


def _ssh_verify(allowed: Path, principal: str, signature: Path, data: Path) -> subprocess.CompletedProcess[str]:
    assert SSH_KEYGEN is not None
    with data.open("rb") as stdin:
        return subprocess.run(
            [SSH_KEYGEN, "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE, "-s", str(signature)],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def test_key_files_private_0600_and_never_printed(tmp_path: Path) -> None:
    result = _kubeplay("keygen", str(tmp_path / "k"), "-C", "ops@build")
    assert result.returncode == 0, result.stderr
    private = (tmp_path / "k").read_text()
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    body = "".join(private.splitlines()[1:-1])
    assert body not in result.stdout + result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    public = (tmp_path / "k.pub").read_text().split()
    assert f'ops@build namespaces="kubeplay-bundle" {public[0]} {public[1]}' in result.stderr
    again = _kubeplay("keygen", str(tmp_path / "k"))
    assert again.returncode == 2
    assert "does not overwrite" in again.stderr
    assert (tmp_path / "k").read_text() == private


@needs_ssh_keygen
def test_real_ssh_keygen_accepts_kubeplay_signature(bundle: Path, key: Path, tmp_path: Path) -> None:
    signature = sign_bundle(bundle, load_private_key(key))
    assert signature == bundle / SIGNATURE_NAME
    allowed = _allowed(tmp_path / "allowed_signers", ("builder@example", Path(f"{key}.pub")))
    result = _ssh_verify(allowed, "builder@example", signature, bundle / SUMS_NAME)
    assert result.returncode == 0, result.stderr
    assert 'Good "kubeplay-bundle" signature for builder@example' in result.stdout
    flip_byte(bundle / SUMS_NAME)
    assert _ssh_verify(allowed, "builder@example", signature, bundle / SUMS_NAME).returncode != 0


@needs_ssh_keygen
@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_kubeplay_accepts_signature_made_by_ssh_keygen(bundle: Path, tmp_path: Path, kind: str) -> None:
    assert SSH_KEYGEN is not None
    key = tmp_path / f"id_{kind}"
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "ci", "-f", str(key)], check=True, timeout=30)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(bundle / SUMS_NAME)],
        check=True,
        timeout=30,
    )
    allowed = _allowed(tmp_path / "allowed_signers", ("ci@build", Path(f"{key}.pub")))
    result = verify_bundle(bundle, allowed_signers=allowed)
    assert result.ok
    assert result.signer is not None
    assert result.signer.principals == "ci@build"
    flip_byte(bundle / SUMS_NAME)
    with pytest.raises(UntrustedBundle, match="bad signature"):
        verify_bundle(bundle, allowed_signers=allowed)
    flip_byte(bundle / SUMS_NAME)
    if kind == "rsa":  # checked, not made: kubeplay signs with Ed25519 or ECDSA keys
        with pytest.raises(BadInput, match="RSAPrivateKey; kubeplay signs with Ed25519 or ECDSA keys"):
            load_private_key(key)
        return
    # and a bundle signed by kubeplay with ssh-keygen's own key file (OpenSSH private key format)
    sign_bundle(bundle, load_private_key(key))
    assert verify_bundle(bundle, allowed_signers=allowed).signer is not None


def test_signed_directory_and_archive_verify_and_name_the_signer(bundle: Path, key: Path, tmp_path: Path) -> None:
    private = load_private_key(key)
    sign_bundle(bundle, private)
    allowed = _allowed(tmp_path / "allowed_signers", ("builder@example", Path(f"{key}.pub")))
    result = verify_bundle(bundle, allowed_signers=allowed)
    assert result.ok, result.report.lines()
    assert result.signer is not None
    assert result.signer.principals == "builder@example"
    packed = pack_checked_bundle(bundle, tmp_path / "out")
    beside = sign_file(packed.sha256_file, private)
    archived = verify_bundle(packed.archive, allowed_signers=allowed)
    assert archived.ok, archived.report.lines()
    assert archived.signer is not None
    for offset in (3, 70):  # a digit of the digest, a letter of the name: refused before it is parsed
        original = packed.sha256_file.read_bytes()
        flip_byte(packed.sha256_file, offset)
        with pytest.raises(UntrustedBundle, match=f"{packed.sha256_file.name}: bad signature"):
            verify_bundle(packed.archive, allowed_signers=allowed)
        packed.sha256_file.write_bytes(original)
    beside.unlink()  # the signature inside the archive is still required
    assert verify_bundle(packed.archive, allowed_signers=allowed).signer is not None
    split = pack_checked_bundle(bundle, tmp_path / "split", split_size=128 << 10)
    assert split.parts_manifest is not None
    sign_file(split.parts_manifest, private)
    assert verify_bundle(split.parts[1], allowed_signers=allowed).ok
    flip_byte(split.parts_manifest, 20)
    with pytest.raises(UntrustedBundle, match=r"parts\.json: bad signature"):
        verify_bundle(split.parts[1], allowed_signers=allowed)


@pytest.mark.parametrize("victim", [SUMS_NAME, "config-sample.yaml", "kubespray/README.md", KUBEADM])
def test_one_changed_byte_is_refused_with_the_reason(bundle: Path, key: Path, tmp_path: Path, victim: str) -> None:
    sign_bundle(bundle, load_private_key(key))
    allowed = _allowed(tmp_path / "allowed_signers", ("builder@example", Path(f"{key}.pub")))
    flip_byte(bundle / victim)
    if victim == SUMS_NAME:
        with pytest.raises(UntrustedBundle, match=r"bad signature by .*they changed after signing") as info:
            verify_bundle(bundle, allowed_signers=allowed)
        assert info.value.exit_code == 2
    else:  # the signature holds for SHA256SUMS; the digest of the changed file does not
        result = verify_bundle(bundle, allowed_signers=allowed)
        assert not result.ok
        assert any(line.startswith(f"changed: {victim} ") for line in result.report.lines())


def test_resummed_bundle_is_refused(bundle: Path, key: Path, tmp_path: Path) -> None:
    sign_bundle(bundle, load_private_key(key))
    allowed = _allowed(tmp_path / "allowed_signers", ("builder@example", Path(f"{key}.pub")))
    flip_byte(bundle / KUBEADM)
    write_sha256sums(bundle, use_cache=False)  # an attacker recomputes the sums to match
    with pytest.raises(UntrustedBundle, match="bad signature"):
        verify_bundle(bundle, allowed_signers=allowed)


def test_swapped_unsigned_and_unknown_signer_are_refused(bundle: Path, tmp_path: Path) -> None:
    builder, other = tmp_path / "builder", tmp_path / "other"
    generate_key(builder, "builder@example")
    generate_key(other, "mallory@example")
    allowed = _allowed(tmp_path / "allowed_signers", ("builder@example", Path(f"{builder}.pub")))
    with pytest.raises(UntrustedBundle, match="not signed"):
        verify_bundle(bundle, allowed_signers=allowed)
    # a signature of another bundle's SHA256SUMS by the right key
    second = make_bundle(tmp_path / "second")
    (second / "extra.txt").write_text("different content\n")
    write_sha256sums(second, use_cache=False)
    sign_bundle(second, load_private_key(builder))
    shutil.copy(second / SIGNATURE_NAME, bundle / SIGNATURE_NAME)
    with pytest.raises(UntrustedBundle, match="bad signature by ssh-ed25519 SHA256:"):
        verify_bundle(bundle, allowed_signers=allowed)
    sign_bundle(bundle, load_private_key(other))
    with pytest.raises(UntrustedBundle, match="does not allow: the key is not listed") as info:
        verify_bundle(bundle, allowed_signers=allowed)
    assert "ssh-ed25519 SHA256:" in info.value.message


def test_namespace_and_validity_options_are_honoured(bundle: Path, tmp_path: Path) -> None:
    key = tmp_path / "k"
    generate_key(key, "k")
    sign_bundle(bundle, load_private_key(key))
    pub = Path(f"{key}.pub")
    other_ns = _allowed(tmp_path / "a1", ("k", pub), options='namespaces="git,file"')
    with pytest.raises(UntrustedBundle, match="allows namespaces 'git,file', not 'kubeplay-bundle'"):
        verify_bundle(bundle, allowed_signers=other_ns)
    expired = _allowed(tmp_path / "a2", ("k", pub), options="valid-before=20200101Z")
    with pytest.raises(UntrustedBundle, match="expired"):
        verify_bundle(bundle, allowed_signers=expired)
    wildcard = _allowed(tmp_path / "a3", ("k", pub), options='namespaces="kubeplay-*",valid-after=20200101')
    assert verify_bundle(bundle, allowed_signers=wildcard).signer is not None


def test_malformed_allowed_signers_names_the_line() -> None:
    with pytest.raises(BadInput, match="signers:2: expected"):
        parse_allowed_signers("# comment\nalice nonsense\n", "signers")
    with pytest.raises(BadInput, match="unknown option 'bogus'"):
        parse_allowed_signers("alice bogus=1 ssh-ed25519 AAAA\n", "signers")
    quoted = parse_allowed_signers('"a@x,b@y" namespaces="p,q" ssh-ed25519 AAAA comment\n', "s")
    assert quoted[0].principals == "a@x,b@y"
    assert quoted[0].namespaces == "p,q"


def test_cli_sign_and_verify_exit_codes(bundle: Path, tmp_path: Path) -> None:
    key, other = tmp_path / "k", tmp_path / "other"
    assert _kubeplay("keygen", str(key), "-C", "builder@example", "-t", "ecdsa").returncode == 0
    assert _kubeplay("keygen", str(other), "-C", "mallory").returncode == 0
    allowed = _allowed(tmp_path / "allowed_signers", ("builder@example", Path(f"{key}.pub")))
    unsigned = _kubeplay("verify", str(bundle), "--allowed-signers", str(allowed))
    assert unsigned.returncode == 2
    assert "not signed" in unsigned.stderr
    signed = _kubeplay("sign", str(bundle), "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    ok = _kubeplay("verify", str(bundle), "--allowed-signers", str(allowed))
    assert ok.returncode == 0, ok.stderr
    assert "signed by builder@example" in ok.stderr
    plain = _kubeplay("verify", str(bundle))
    assert plain.returncode == 0
    assert "origin not checked" in plain.stderr
    assert _kubeplay("sign", str(bundle), "--key", str(other)).returncode == 0
    refused = _kubeplay("verify", str(bundle), "--allowed-signers", str(allowed))
    assert refused.returncode == 2
    assert "which" in refused.stderr and "does not allow" in refused.stderr
    packed = _kubeplay("pack", str(bundle), "-o", str(tmp_path / "out"), "--sign", str(key))
    assert packed.returncode == 0, packed.stderr
    sidecars = list((tmp_path / "out").glob("*.sha256.sig"))
    assert len(sidecars) == 1
    bad_key = _kubeplay("sign", str(bundle), "--key", str(tmp_path / "missing"))
    assert bad_key.returncode == 2
    assert "cannot read the signing key" in bad_key.stderr


def test_kubeplay_install_checks_the_signature_config_yaml_asks_for(tmp_path: Path) -> None:
    from tests.bootstrap_fixture import make_bundle as make_served_bundle

    from kubeplay.bootstrap.context import prepare_context
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bundle.trust import allowed_signers_for
    from kubeplay.console import Output

    bundle = make_served_bundle(tmp_path / "site", images=1)
    key = tmp_path / "k"
    generate_key(key, "builder@example")
    (tmp_path / "conf").mkdir()
    allowed = _allowed(tmp_path / "conf" / "signers", ("builder@example", Path(f"{key}.pub")))
    config = tmp_path / "conf" / "config.yaml"
    config.write_text("compose:\n  internal_ip: 127.0.0.1\n  allowed_signers: signers\n")
    assert allowed_signers_for(config, "signers") == allowed  # relative to config.yaml, as install.sh reads it
    assert allowed_signers_for(config, None, None, tmp_path / "absent") is None
    assert allowed_signers_for(config, None, allowed, tmp_path / "absent") == allowed  # KUBEPLAY_ALLOWED_SIGNERS
    with pytest.raises(BadInput, match="does not exist"):
        allowed_signers_for(config, "missing")
    paths = HostPaths(root=tmp_path / "root")
    with pytest.raises(UntrustedBundle, match="not signed"):
        prepare_context(config, bundle, paths, True, Output(quiet=True))
    sign_bundle(bundle, load_private_key(key))
    assert prepare_context(config, bundle, paths, True, Output(quiet=True)).bundle is not None


@needs_ssh_keygen
def test_passphrase_protected_key_is_opened_with_the_passphrase_asked_for(bundle: Path, tmp_path: Path) -> None:
    assert SSH_KEYGEN is not None
    key = tmp_path / "id_ed25519"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "s3cret pass", "-C", "ci", "-f", str(key)], check=True)
    private = load_private_key(key, lambda: b"s3cret pass")
    sign_bundle(bundle, private)
    allowed = _allowed(tmp_path / "allowed_signers", ("ci@build", Path(f"{key}.pub")))
    assert verify_bundle(bundle, allowed_signers=allowed).signer is not None
    with pytest.raises(BadInput, match="wrong passphrase"):
        load_private_key(key, lambda: b"not it")
    with pytest.raises(BadInput, match="protected by a passphrase, and there is no terminal"):
        load_private_key(key)
    no_terminal = _kubeplay("sign", str(bundle), "--key", str(key))  # stdin is not a terminal here
    assert no_terminal.returncode == 2
    assert "s3cret" not in no_terminal.stdout + no_terminal.stderr
