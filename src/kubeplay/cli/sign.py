"""`kubeplay keygen KEY` and `kubeplay sign BUNDLE --key KEY`: SSH keys and signatures for bundles.

The signature is OpenSSH's SSHSIG (namespace `kubeplay-bundle`): `ssh-keygen -Y verify` checks it too.
"""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay.cli.output import command_output

if TYPE_CHECKING:
    from kubeplay.bundle.sshsig import PrivateKey

KEY_HELP = "Private key (Ed25519 or ECDSA, OpenSSH or PEM format, no passphrase) that signs SHA256SUMS."


def keygen(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="Where to write the private key (0600); the public key goes to PATH.pub.")
    ],
    key_type: Annotated[str, typer.Option("--type", "-t", help="ed25519 or ecdsa (nistp256).")] = "ed25519",
    comment: Annotated[
        str | None,
        typer.Option("--comment", "-C", help="Key comment and allowed_signers principal (default user@host)."),
    ] = None,
) -> None:
    """Make a key pair for signing bundles, and print the allowed_signers line for the deploy node."""
    from kubeplay.bundle.trust import NAMESPACE, generate_key

    out = command_output(ctx)
    principal = comment or f"{getpass.getuser()}@{socket.gethostname()}"
    public = generate_key(path, principal, key_type)
    out.info(f"private key {path} (mode 0600; keep it on the build side, never copy it into a bundle)")
    out.info(f"public key {path}.pub; on the deploy node, put this line in /etc/kubeplay/allowed_signers:")
    line = f'{principal} namespaces="{NAMESPACE}" {" ".join(public.split()[:2])}'
    out.line(line)
    out.event("keygen", private_key=str(path), public_key=f"{path}.pub", allowed_signers_line=line)
    out.summary(f"made an {key_type} key pair at {path}")


def sign(
    ctx: typer.Context,
    bundle: Annotated[
        Path, typer.Argument(help="A bundle directory (signs SHA256SUMS), or a packed archive or .parts.json.")
    ],
    key: Annotated[Path, typer.Option("--key", "-k", help=KEY_HELP)],
) -> None:
    """Sign a bundle's SHA256SUMS as SHA256SUMS.sig (or a packed archive's digest file as <file>.sig)."""
    from kubeplay.bundle import sshsig
    from kubeplay.bundle.parts import open_archive_source
    from kubeplay.bundle.trust import sign_bundle, sign_file
    from kubeplay.errors import BadInput

    out = command_output(ctx)
    private_key = signing_key(key)
    if bundle.is_dir():
        written = sign_bundle(bundle, private_key)
    else:
        source = open_archive_source(bundle)
        if source.digest_source is None:
            raise BadInput(
                f"{bundle}: no .sha256 or parts manifest beside it to sign", hint="pack it again with `kubeplay pack`"
            )
        written = sign_file(source.files[0].parent / source.digest_source, private_key)
    fingerprint = sshsig.fingerprint(sshsig.public_key_blob(private_key.public_key()))
    out.event("signed", path=str(written), fingerprint=fingerprint)
    out.summary(f"signed {bundle}: {written} ({sshsig.key_type(private_key.public_key())} {fingerprint})")


def signing_key(path: Path) -> PrivateKey:
    """The private key at `path`; a passphrase is asked for on the terminal (never echoed), never read from argv."""
    from kubeplay.bundle.trust import load_private_key

    def ask() -> bytes | None:
        return getpass.getpass(f"passphrase for {path}: ").encode() if sys.stdin.isatty() else None

    return load_private_key(path, ask)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("sign")(sign)
