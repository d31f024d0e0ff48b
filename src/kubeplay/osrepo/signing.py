"""Repo signing keys. A bundle's: made at build time in a private GNUPGHOME, discarded after signing.

Only the public key ships (repos/kubeplay-archive-keyring.gpg); nodes reference it with signed-by=, and
nobody can sign more content with it once the build is over. The deploy node's (`home=` given): made once
at its first install and kept (mode 0700) in /etc/kubeplay, because the OS repos it serves are the union
of every installed bundle, re-indexed on each install and signed by the one key its nodes trust.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from kubeplay.errors import SigningFailed

GPG_TIMEOUT = 120
KEYRING_NAME = "kubeplay-archive-keyring.gpg"


class BundleSigner:
    """A throwaway ed25519 signing key. Use as a context manager; the private key is gone on exit."""

    def __init__(
        self, uid: str = "kubeplay bundle repository signing key <kubeplay@localhost>", home: Path | None = None
    ) -> None:
        self.uid = uid
        self.keep = home is not None
        if home is None:
            self.home = Path(tempfile.mkdtemp(prefix="kubeplay-gnupg-"))
        else:
            self.home = home
            home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self.fingerprint = ""

    def _gpg(self, *args: str) -> bytes:
        cmd = ["gpg", "--homedir", str(self.home), "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback"]
        try:
            proc = subprocess.run([*cmd, *args], capture_output=True, timeout=GPG_TIMEOUT, check=False)
        except FileNotFoundError:
            raise SigningFailed(
                "gpg is not installed: it signs the OS repo indexes",
                hint="install gnupg (gpg and gpg-agent; the bundle's deploy-node packages carry them: "
                "re-run install with --from os-packages)",
            ) from None
        if proc.returncode != 0:
            raise SigningFailed(
                f"gpg {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}",
                hint="check that gnupg (gpg) is installed and /tmp is writable",
            )
        return proc.stdout

    def _secret_fingerprints(self) -> list[str]:
        out = self._gpg("--with-colons", "--list-secret-keys").decode()
        return [ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")]

    def __enter__(self) -> BundleSigner:
        fprs = self._secret_fingerprints() if self.keep else []
        if not fprs:
            self._gpg("--passphrase", "", "--quick-gen-key", self.uid, "ed25519", "sign", "never")
            fprs = self._secret_fingerprints()
        if not fprs:
            raise SigningFailed("gpg made no key", hint="check the gnupg installation")
        self.fingerprint = fprs[0]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True, timeout=30, check=False
        )
        if not self.keep:
            shutil.rmtree(self.home, ignore_errors=True)

    def public_key(self) -> bytes:
        """The public key as a binary OpenPGP keyring (what apt's signed-by= and rpm --import accept)."""
        return self._gpg("--export", self.fingerprint)

    def public_key_armored(self) -> bytes:
        return self._gpg("--armor", "--export", self.fingerprint)

    def clearsign(self, src: Path, dest: Path) -> None:
        """dest = src clear-signed (apt's InRelease)."""
        tmp = dest.with_name(dest.name + ".part")
        self._gpg(
            "--yes",
            "--local-user",
            self.fingerprint,
            "--digest-algo",
            "SHA512",
            "--clearsign",
            "-o",
            str(tmp),
            str(src),
        )
        tmp.replace(dest)

    def detach_sign(self, src: Path, dest: Path) -> None:
        """dest = armored detached signature of src (apt's Release.gpg, rpm's repomd.xml.asc)."""
        tmp = dest.with_name(dest.name + ".part")
        self._gpg(
            "--yes", "--local-user", self.fingerprint, "--digest-algo", "SHA512", "--armor", "--detach-sign",
            "-o", str(tmp), str(src),
        )  # fmt: skip
        tmp.replace(dest)
