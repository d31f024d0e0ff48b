"""Where each upstream URL is really fetched from, what TLS to trust there, and with which credentials.

`mirrors:` in bundle.yaml maps an upstream host to a base URL that replaces `https://<host>`:
a file mirror (`https://nexus/repository/dl.k8s.io`) or a registry (`https://harbor/proxy-project` —
registry base `https://harbor`, repository prefix `proxy-project/`). Credentials never come from
bundle.yaml: they come from `KUBEPLAY_CRED_<NAME>_USERNAME`/`_PASSWORD` or from the credentials file the
spec names (YAML `{name: {username, password}}`, refused when group- or world-readable). `Credentials`
hides its password from repr/str so it cannot leak through logs or tracebacks.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kubeplay import settings
from kubeplay.config.bundle import BundleSpec, Mirror
from kubeplay.console import Output
from kubeplay.errors import BadInput, ConfigError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"Credentials({self.username}, ***)"


@dataclass(frozen=True)
class Tls:
    """What to trust for one endpoint: the system store, a CA file, or (only when written) nothing."""

    ca: Path | None = None
    insecure: bool = False

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        ctx = ssl.create_default_context()
        if self.ca is not None:
            ctx.load_verify_locations(cafile=str(self.ca))
        return ctx


@dataclass(frozen=True)
class Resolved:
    """An upstream URL mapped to where it is fetched from."""

    url: str
    tls: Tls
    credentials: Credentials | None
    mirrored: bool


@dataclass(frozen=True)
class RegistryEndpoint:
    """Where repository `<upstream registry>/<repo>` is pulled from: API base and repository prefix."""

    upstream: str
    base: str
    prefix: str
    tls: Tls
    credentials: Credentials | None

    def repository(self, upstream_repository: str) -> str:
        return f"{self.prefix}{upstream_repository}"


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def redact(text: str) -> str:
    """Remove `user:password@` from every URL in `text`."""
    return _USERINFO.sub(r"\g<scheme>", text)


def docker_repository(registry: str, repository: str) -> str:
    """Docker Hub's implicit `library/` for one-component names; other registries unchanged."""
    if registry in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io") and "/" not in repository:
        return f"library/{repository}"
    return repository


@dataclass
class MirrorSet:
    """The mirrors of one build with their credentials loaded. Empty means: fetch from upstream directly."""

    mirrors: Mapping[str, Mirror] = field(default_factory=dict)
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    base_dir: Path = Path(".")

    def _tls(self, mirror: Mirror) -> Tls:
        ca = mirror.ca if mirror.ca is None or mirror.ca.is_absolute() else self.base_dir / mirror.ca
        return Tls(ca=ca, insecure=mirror.insecure)

    def _creds(self, mirror: Mirror) -> Credentials | None:
        return self.credentials.get(mirror.credentials) if mirror.credentials else None

    def resolve(self, url: str) -> Resolved:
        """Map an upstream URL through its host's mirror; a URL already under a mirror keeps that mirror's TLS."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        mirror = self.mirrors.get(host)
        if mirror is not None and parts.scheme in ("http", "https"):
            tail = url[len(f"{parts.scheme}://{parts.netloc}") :]
            return Resolved(mirror.url.rstrip("/") + tail, self._tls(mirror), self._creds(mirror), True)
        # A URL already pointing at a mirror: a file under its base, or the registry API under its prefix.
        same_origin: list[Mirror] = []
        for mirror in self.mirrors.values():
            base = mirror.url.rstrip("/")
            if url == base or url.startswith(base + "/"):
                return Resolved(url, self._tls(mirror), self._creds(mirror), True)
            if _same_origin(url, base):
                prefix = urllib.parse.urlsplit(base).path.strip("/")
                if parts.path.startswith(f"/v2/{prefix}/" if prefix else "/v2/"):
                    return Resolved(url, self._tls(mirror), self._creds(mirror), True)
                same_origin.append(mirror)
        if same_origin:
            return Resolved(url, self._tls(same_origin[0]), self._creds(same_origin[0]), True)
        return Resolved(url, Tls(), None, False)

    def registry(self, host: str) -> RegistryEndpoint:
        """The endpoint serving images of upstream registry `host`."""
        mirror = self.mirrors.get(host)
        if mirror is None:
            api = DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host
            return RegistryEndpoint(host, f"https://{api}", "", Tls(), None)
        parts = urllib.parse.urlsplit(mirror.url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"mirrors.{host}.url: expected an http(s) URL, got {redact(mirror.url)!r}")
        prefix = parts.path.strip("/")
        return RegistryEndpoint(
            host,
            f"{parts.scheme}://{parts.netloc}",
            f"{prefix}/" if prefix else "",
            self._tls(mirror),
            self._creds(mirror),
        )


def _same_origin(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def credentials_from_env(names: set[str], environ: Mapping[str, str]) -> dict[str, Credentials]:
    found: dict[str, Credentials] = {}
    for name in names:
        user_var, password_var = settings.mirror_credential_variables(name)
        user, password = environ.get(user_var), environ.get(password_var)
        if user is not None and password is not None:
            found[name] = Credentials(user, password)
    return found


def credentials_from_file(path: Path) -> dict[str, Credentials]:
    """Read `{name: {username, password}}`; refuse a file others can read. Errors never quote its content."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: credentials file not found", hint="fix credentials_file in bundle.yaml") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: credentials file is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML", hint="expected {name: {username: ..., password: ...}}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of credential names")
    out: dict[str, Credentials] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str) or "password" not in entry:
            raise ConfigError(f"{path}: entry {name!r} needs string username and password")
        out[str(name)] = Credentials(entry["username"], str(entry["password"]))
    return out


def load_mirrors(spec: BundleSpec, environ: Mapping[str, str] | None = None, *, out: Output) -> MirrorSet:
    """The spec's mirrors with every referenced credential loaded; raise BadInput when one is missing.

    A mirror whose TLS certificates are not checked (`insecure: true`) is named in a warning on `out`.
    """
    env = os.environ if environ is None else environ
    wanted = {m.credentials for m in spec.mirrors.values() if m.credentials}
    creds: dict[str, Credentials] = {}
    if spec.credentials_file is not None and wanted - set(credentials_from_env(wanted, env)):
        creds.update(credentials_from_file(spec.resolve(spec.credentials_file)))
    creds.update(credentials_from_env(wanted, env))  # the environment wins over the file
    for host, mirror in spec.mirrors.items():
        if mirror.credentials and mirror.credentials not in creds:
            user_var, password_var = settings.mirror_credential_variables(mirror.credentials)
            raise BadInput(
                f"mirrors.{host}.credentials: no credentials named {mirror.credentials!r}",
                hint=f"set {user_var} and {password_var}, or add it to the credentials_file",
            )
        if mirror.ca is not None and not spec.resolve(mirror.ca).is_file():
            raise BadInput(f"mirrors.{host}.ca: {spec.resolve(mirror.ca)} not found")
        if mirror.insecure:
            out.warn(f"mirrors.{host}: TLS certificates are not verified (insecure: true)")
    return MirrorSet(mirrors=dict(spec.mirrors), credentials=creds, base_dir=spec.base_dir)
