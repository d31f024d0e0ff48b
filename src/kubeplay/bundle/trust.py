"""Who built a bundle: SSH key pairs, `SHA256SUMS.sig` (SSHSIG, namespace `kubeplay-bundle`) and its check.

SHA256SUMS covers kubeplay.json and every file, so signing it signs the bundle. The signature is the
same armored text `ssh-keygen -Y sign -n kubeplay-bundle` writes, so an auditor checks it with
`ssh-keygen -Y verify` and sha256sum alone. A packed archive's `.sha256` (or `.parts.sha256`) sidecar is
signed the same way (`<sidecar>.sig`), so the archive can be checked before it is unpacked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from kubeplay.bundle import sshsig
from kubeplay.bundle.allowed_signers import AllowedSigner, find_signer, parse_allowed_signers
from kubeplay.bundle.manifest import SIGNATURE_NAME, SUMS_NAME
from kubeplay.errors import BadInput, UntrustedBundle
from kubeplay.state import atomic_write

NAMESPACE = "kubeplay-bundle"
DEFAULT_ALLOWED_SIGNERS = Path("/etc/kubeplay/allowed_signers")
KEY_TYPES = ("ed25519", "ecdsa")


@dataclass(frozen=True)
class Signer:
    """Who signed: the allowed_signers principals, key type and fingerprint."""

    principals: str
    key_type: str
    fingerprint: str

    def describe(self) -> str:
        return f"{self.principals} ({self.key_type} {self.fingerprint})"


def generate_key(path: Path, comment: str, kind: str = "ed25519") -> str:
    """Write a new private key at `path` (0600, OpenSSH format) and `path.pub`; return the public key line.

    Refuses (BadInput) to overwrite an existing key.
    """
    if kind not in KEY_TYPES:
        raise BadInput(f"key type {kind!r}: kubeplay makes {' or '.join(KEY_TYPES)} keys")
    for existing in (path, path.with_name(path.name + ".pub")):
        if existing.exists():
            raise BadInput(f"{existing}: exists; kubeplay does not overwrite keys", hint="choose another path")
    key: sshsig.PrivateKey = (
        ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    )
    body = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    public = sshsig.public_key_line(key.public_key(), comment)
    path.with_name(path.name + ".pub").write_text(public + "\n", encoding="utf-8")
    return public


def _parse_key(body: bytes, password: bytes | None) -> object:
    if body.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        return serialization.load_ssh_private_key(body, password=password)
    return serialization.load_pem_private_key(body, password=password)


def load_private_key(path: Path, ask_passphrase: Callable[[], bytes | None] | None = None) -> sshsig.PrivateKey:
    """The Ed25519 or ECDSA private key in an OpenSSH or PEM key file; BadInput saying why it cannot be used.

    A key protected by a passphrase is opened with what `ask_passphrase` returns (None: cannot ask).
    """
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the signing key: {exc.strerror}") from None
    key: object
    try:
        key = _parse_key(body, None)
    except TypeError:  # encrypted: cryptography wants a password
        passphrase = ask_passphrase() if ask_passphrase is not None else None
        if passphrase is None:
            raise BadInput(
                f"{path}: the key is protected by a passphrase, and there is no terminal to ask for it",
                hint="run the command on a terminal, or sign with an unencrypted key kept offline",
            ) from None
        try:
            key = _parse_key(body, passphrase)
        except UnsupportedAlgorithm as exc:  # cryptography opens passphrase-protected OpenSSH keys with bcrypt
            raise BadInput(
                f"{path}: cannot open the key: {exc}", hint="install bcrypt (the build extra has it)"
            ) from None
        except (ValueError, TypeError):
            raise BadInput(f"{path}: wrong passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(f"{path}: not an OpenSSH or PEM private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise BadInput(f"{path}: a {type(key).__name__}; kubeplay signs with Ed25519 or ECDSA keys")
    return key


def sign_file(target: Path, key: sshsig.PrivateKey) -> Path:
    """Write `<target>.sig`, the SSHSIG signature of `target`'s bytes; return its path."""
    signature = sshsig.sign(target.read_bytes(), key, NAMESPACE)
    sig_path = target.with_name(target.name + ".sig")
    atomic_write(sig_path, signature.encode())
    return sig_path


def sign_bundle(bundle_dir: Path, key: sshsig.PrivateKey) -> Path:
    """Sign the bundle's SHA256SUMS as `SHA256SUMS.sig`; BadInput when the bundle has no SHA256SUMS."""
    sums = bundle_dir / SUMS_NAME
    if not sums.is_file():
        raise BadInput(
            f"{bundle_dir}: no {SUMS_NAME}, so not a finished bundle", hint="sign the directory `kubeplay build` wrote"
        )
    path = sign_file(sums, key)
    assert path.name == SIGNATURE_NAME
    return path


def read_allowed_signers(path: Path) -> list[AllowedSigner]:
    """The signer lines of an allowed_signers file; BadInput when it is missing, unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the allowed signers: {exc.strerror}") from None
    return parse_allowed_signers(text, str(path))


def check_signature(message: bytes, signature_text: str | None, allowed_signers: Path, what: str) -> Signer:
    """The signer of `message` when `signature_text` verifies and its key may sign kubeplay bundles.

    Raises UntrustedBundle (exit 2) naming `what`, the reason, and the signer's key when one was found.
    """
    signers = read_allowed_signers(allowed_signers)
    if signature_text is None:
        raise UntrustedBundle(
            f"{what}: not signed (no {SIGNATURE_NAME}), and {allowed_signers} requires a signature",
            hint="sign it on the build machine: kubeplay sign BUNDLE --key KEY",
        )
    try:
        signature = sshsig.parse(signature_text)
    except sshsig.SignatureFormatError as exc:
        raise UntrustedBundle(f"{what}: unreadable signature: {exc}") from None
    found = f"{signature.key_type} {signature.fingerprint}"
    try:
        sshsig.check(message, signature, NAMESPACE)
    except (sshsig.SignatureMismatch, sshsig.SignatureFormatError) as exc:
        raise UntrustedBundle(
            f"{what}: bad signature by {found}: {exc}",
            hint="copy the bundle again from the build machine; do not install it as it is",
        ) from None
    line, reason = find_signer(signers, signature.public_key, NAMESPACE)
    if line is None:
        raise UntrustedBundle(
            f"{what}: signed by {found}, which {allowed_signers} does not allow: {reason}",
            hint="add the builder's public key to allowed_signers only if you trust who holds it",
        )
    return Signer(line.principals, signature.key_type, signature.fingerprint)


def allowed_signers_for(
    config_path: Path,
    configured: str | None,
    from_environment: Path | None = None,
    default: Path = DEFAULT_ALLOWED_SIGNERS,
) -> Path | None:
    """The allowed_signers file the deploy node uses, as install.sh picks it: config.yaml's
    compose.allowed_signers (relative to config.yaml), else KUBEPLAY_ALLOWED_SIGNERS (`from_environment`),
    else `default` when it exists, else None.

    Raises BadInput when config.yaml or the environment names a file that does not exist.
    """
    if configured:
        path = Path(configured)
        path = path if path.is_absolute() else config_path.resolve().parent / path
        if not path.is_file():
            raise BadInput(f"{path} (compose.allowed_signers in {config_path}) does not exist")
        return path
    if from_environment is not None:
        if not from_environment.is_file():
            raise BadInput(f"{from_environment} (KUBEPLAY_ALLOWED_SIGNERS) does not exist")
        return from_environment
    return default if default.is_file() else None
