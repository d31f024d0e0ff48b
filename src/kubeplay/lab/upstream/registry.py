"""The real CNCF distribution registry (Debian's `docker-registry`) on loopback, TLS, with none/basic/token auth."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import importlib
import secrets
import ssl
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from kubeplay.errors import KubeplayError
from kubeplay.lab.upstream.pki import TestPKI
from kubeplay.lab.upstream.process import ServerProcess, require_binary, start_on_free_port
from kubeplay.state import atomic_write

REGISTRY_BINARY = "/usr/bin/docker-registry"
REGISTRY_PACKAGE = "docker-registry"
TOKEN_SERVICE = "kubeplay-lab-registry"  # noqa: S105 - a name, not a secret
TOKEN_ISSUER = "kubeplay-lab-token-issuer"  # noqa: S105 - a name, not a secret
BCRYPT_COST = 5  # the registry checks bcrypt on every request; a high cost only slows the tests

AuthMode = Literal["none", "basic", "token"]


@functools.cache
def _libcrypt() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    return lib


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    """A `$2b$` bcrypt hash of `password`, as htpasswd -B writes; uses the `bcrypt` module or libxcrypt."""
    try:
        bcrypt: Any = importlib.import_module("bcrypt")
    except ImportError:
        bcrypt = None
    if bcrypt is not None:
        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost))
        return str(hashed.decode())
    try:
        lib = _libcrypt()
    except OSError as exc:
        raise KubeplayError(
            "cannot hash the simulator registry password: neither the bcrypt module nor libcrypt is available",
            hint="pip install bcrypt, or apt-get install libcrypt1",
        ) from exc
    setting: bytes | None = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    result: bytes | None = lib.crypt(password.encode(), setting) if setting else None
    if not result or not result.startswith(b"$2"):
        raise KubeplayError(
            "libcrypt could not make a bcrypt hash for the simulator registry",
            hint="pip install bcrypt into the venv",
        )
    return result.decode()


def write_htpasswd(path: Path, username: str, password: str) -> None:
    """Write a one-user htpasswd file (bcrypt, the only scheme distribution accepts), mode 0600."""
    atomic_write(path, f"{username}:{bcrypt_hash(password)}\n".encode(), mode=0o600)


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    port: int
    storage: Path
    auth: AuthMode
    htpasswd: Path | None = None
    token_realm: str | None = None
    token_rootcertbundle: Path | None = None


def render_registry_config(cfg: RegistryConfig, pki: TestPKI) -> dict[str, Any]:
    """The registry's config.yml as data."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}, "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(cfg.storage)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{cfg.port}",
            "secret": secrets.token_hex(16),
            "tls": {"certificate": str(pki.server_cert), "key": str(pki.server_key)},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if cfg.auth == "basic":
        config["auth"] = {"htpasswd": {"realm": "kubeplay-lab", "path": str(cfg.htpasswd)}}
    elif cfg.auth == "token":
        config["auth"] = {
            "token": {
                "realm": cfg.token_realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(cfg.token_rootcertbundle),
            }
        }
    return config


def registry_answers(port: int, ca_cert: Path) -> bool:
    """True once GET /v2/ gets any HTTP answer (200 or 401) over TLS."""
    try:
        response = httpx.get(
            f"https://127.0.0.1:{port}/v2/", verify=ssl.create_default_context(cafile=str(ca_cert)), timeout=2.0
        )
    except httpx.HTTPError:
        return False
    return response.status_code in (200, 401)


def start_registry(workdir: Path, pki: TestPKI, cfg_without_port: RegistryConfig) -> ServerProcess:
    """Start docker-registry on a free loopback port with a generated config.yml (0600: it holds a secret)."""
    binary = require_binary(REGISTRY_BINARY, REGISTRY_PACKAGE)
    config_path = workdir / "config.yml"

    def prepare(port: int) -> list[str]:
        cfg = dataclasses.replace(cfg_without_port, port=port)
        text = yaml.safe_dump(render_registry_config(cfg, pki), sort_keys=False)
        atomic_write(config_path, text.encode(), mode=0o600)
        return [binary, "serve", str(config_path)]

    return start_on_free_port(
        "docker-registry", prepare, workdir / "registry.log", lambda port: registry_answers(port, pki.ca_cert)
    )
