"""OpenSSH signatures (SSHSIG, PROTOCOL.sshsig) made and checked with `cryptography`, so `ssh-keygen -Y` agrees.

A signature is the armored blob

    "SSHSIG" uint32(1) string(public key) string(namespace) string("") string(hash) string(signature)

where the signature is over "SSHSIG" string(namespace) string("") string(hash) string(H(message)).
Ed25519 and ECDSA (nistp256/384/521) keys are supported for signing and checking, RSA keys for checking
(what `ssh-keygen -Y sign` makes with one); other key types are refused with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

MAGIC = b"SSHSIG"
VERSION = 1
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]] = {
    "nistp256": (ec.SECP256R1, hashes.SHA256()),
    "nistp384": (ec.SECP384R1, hashes.SHA384()),
    "nistp521": (ec.SECP521R1, hashes.SHA512()),
}
_CURVE_NAMES = {"secp256r1": "nistp256", "secp384r1": "nistp384", "secp521r1": "nistp521"}

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
# Checked but never made: RSA signatures that ssh-keygen -Y sign writes with an RSA key (rsa-sha2-256/512).
VerifyingKey = PublicKey | rsa.RSAPublicKey
_RSA_HASHES: dict[str, hashes.HashAlgorithm] = {"rsa-sha2-512": hashes.SHA512(), "rsa-sha2-256": hashes.SHA256()}


class SignatureFormatError(ValueError):
    """The bytes are not an SSHSIG signature kubeplay can read (the message says what is wrong)."""


class SignatureMismatch(ValueError):
    """The signature is well formed but does not verify for this message and namespace."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _string(b"\0" + raw if raw and raw[0] & 0x80 else raw)  # a leading zero keeps it positive


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise SignatureFormatError("truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def done(self) -> bool:
        return self.pos == len(self.data)


def key_type(public_key: PublicKey) -> str:
    """The SSH key type name, e.g. `ssh-ed25519` or `ecdsa-sha2-nistp256`."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ssh-ed25519"
    return f"ecdsa-sha2-{_curve_name(public_key.curve)}"


def _curve_name(curve: ec.EllipticCurve) -> str:
    name = _CURVE_NAMES.get(curve.name)
    if name is None:
        raise SignatureFormatError(f"ECDSA curve {curve.name} is not one OpenSSH signs with")
    return name


def public_key_blob(public_key: PublicKey) -> bytes:
    """The key in SSH wire format (what `ssh-ed25519 AAAA…` base64-encodes)."""
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def public_key_line(public_key: PublicKey, comment: str = "") -> str:
    """`<type> <base64>[ comment]`, as in a .pub file or allowed_signers."""
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".rstrip()


def fingerprint(blob: bytes) -> str:
    """`SHA256:<base64>` as ssh-keygen prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def load_public_blob(blob: bytes) -> VerifyingKey:
    """The public key in an SSH wire-format blob; SignatureFormatError for types kubeplay cannot check."""
    kind = _Reader(blob).string().decode(errors="replace")
    if kind not in ("ssh-ed25519", "ssh-rsa") and not kind.startswith("ecdsa-sha2-"):
        raise SignatureFormatError(
            f"key type {kind} is not supported (Ed25519, ECDSA, RSA); check with ssh-keygen -Y verify"
        )
    line = kind.encode() + b" " + base64.b64encode(blob)
    try:
        key = serialization.load_ssh_public_key(line)
    except (ValueError, TypeError) as exc:
        raise SignatureFormatError(f"unreadable {kind} public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise SignatureFormatError(f"key type {kind} is not supported")
    return key


def _signed_data(namespace: str, hash_name: str, message: bytes) -> bytes:
    digest = _HASHES[hash_name](message).digest()
    return MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_name.encode()) + _string(digest)


def _raw_signature(private_key: PrivateKey, data: bytes) -> bytes:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return _string(b"ssh-ed25519") + _string(private_key.sign(data))
    curve = _curve_name(private_key.curve)
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(_CURVES[curve][1])))
    return _string(f"ecdsa-sha2-{curve}".encode()) + _string(_mpint(r) + _mpint(s))


def sign(message: bytes, private_key: PrivateKey, namespace: str, hash_name: str = "sha512") -> str:
    """The armored SSHSIG signature of `message` (what `ssh-keygen -Y sign -n NAMESPACE` writes)."""
    blob = (
        MAGIC
        + struct.pack(">I", VERSION)
        + _string(public_key_blob(private_key.public_key()))
        + _string(namespace.encode())
        + _string(b"")
        + _string(hash_name.encode())
        + _string(_raw_signature(private_key, _signed_data(namespace, hash_name, message)))
    )
    encoded = base64.b64encode(blob).decode()
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


@dataclass(frozen=True)
class Signature:
    """A parsed SSHSIG blob."""

    public_key: bytes
    namespace: str
    hash_name: str
    signature: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def key_type(self) -> str:
        return _Reader(self.public_key).string().decode(errors="replace")


def parse(armored: str) -> Signature:
    """The SSHSIG fields of an armored signature; SignatureFormatError when it is not one."""
    text = armored.strip()
    if not text.startswith(ARMOR_BEGIN) or not text.endswith(ARMOR_END):
        raise SignatureFormatError(f"not an SSH signature (no {ARMOR_BEGIN} … {ARMOR_END} armor)")
    body = "".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split())
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError:
        raise SignatureFormatError("the armored signature is not valid base64") from None
    reader = _Reader(blob)
    if reader.take(6) != MAGIC:
        raise SignatureFormatError("missing SSHSIG preamble")
    version = reader.uint32()
    if version != VERSION:
        raise SignatureFormatError(f"SSHSIG version {version} (kubeplay reads version {VERSION})")
    public_key = reader.string()
    namespace = reader.string().decode(errors="replace")
    reader.string()  # reserved
    hash_name = reader.string().decode(errors="replace")
    signature = reader.string()
    if not reader.done():
        raise SignatureFormatError("trailing bytes after the signature")
    if hash_name not in _HASHES:
        raise SignatureFormatError(f"hash algorithm {hash_name!r} (SSHSIG allows sha256 and sha512)")
    return Signature(public_key, namespace, hash_name, signature)


def check(message: bytes, signature: Signature, namespace: str) -> VerifyingKey:
    """The signer's public key when `signature` is valid for `message` in `namespace`.

    Raises SignatureMismatch (wrong namespace, bytes changed) or SignatureFormatError (unsupported key).
    """
    if signature.namespace != namespace:
        raise SignatureMismatch(f"signed for namespace {signature.namespace!r}, not {namespace!r}")
    public_key = load_public_blob(signature.public_key)
    reader = _Reader(signature.signature)
    kind = reader.string().decode(errors="replace")
    raw = reader.string()
    data = _signed_data(namespace, signature.hash_name, message)
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            if kind != "ssh-ed25519":
                raise SignatureMismatch(f"a {kind} signature from an ssh-ed25519 key")
            public_key.verify(raw, data)
        elif isinstance(public_key, rsa.RSAPublicKey):
            if kind not in _RSA_HASHES:  # SSHSIG forbids ssh-rsa (SHA-1) signatures
                raise SignatureMismatch(f"a {kind} signature from an RSA key (rsa-sha2-256 or -512 expected)")
            public_key.verify(raw, data, padding.PKCS1v15(), _RSA_HASHES[kind])
        else:
            curve = _curve_name(public_key.curve)
            if kind != f"ecdsa-sha2-{curve}":
                raise SignatureMismatch(f"a {kind} signature from an ecdsa-sha2-{curve} key")
            numbers = _Reader(raw)
            r = int.from_bytes(numbers.string(), "big")
            s = int.from_bytes(numbers.string(), "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_CURVES[curve][1]))
    except InvalidSignature:
        raise SignatureMismatch("the signature does not match the signed bytes: they changed after signing") from None
    return public_key
