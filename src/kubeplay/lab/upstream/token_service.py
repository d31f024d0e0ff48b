"""A small Docker-registry token service (the realm of `auth: token`), run as its own process over TLS.

GET  /token?service=S&scope=repository:NAME:pull,push[&scope=…]   with HTTP Basic credentials
POST /token  (OAuth2 form: grant_type=password, username, password, service, scope)
Both answer {"token", "access_token", "expires_in", "issued_at"} with an ES256 JWT whose `kid` is the
libtrust key ID of the signing certificate the registry trusts through `rootcertbundle`.
Wrong credentials: 401. No credentials: 401, or a pull-only token when anonymous pull is enabled.

Run: python -m kubeplay.lab.upstream.token_service CONFIG.json
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import sys
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kubeplay.lab.upstream.pki import libtrust_key_id
from kubeplay.lab.upstream.tls_http import TLSThreadingHTTPServer

TOKEN_LIFETIME = 300
FAULT_PREFIX = re.compile(r"^fault/[a-z-]+/\d+/")
ALL_ACTIONS = ("pull", "push", "delete", "*")


@dataclass(frozen=True)
class TokenServiceConfig:
    port: int
    cert: str
    key: str
    signing_key: str
    issuer: str
    service: str
    username: str
    password_sha256: str
    anonymous_pull: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """A compact ES256 JWS with the libtrust `kid` distribution 2.8 looks up among its trusted keys."""
    header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key())}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scopes(scopes: list[str]) -> list[tuple[str, str, list[str]]]:
    """`repository:quay.io/calico/node:pull,push` -> ("repository", "quay.io/calico/node", ["pull", "push"]).

    The name may itself hold ':' only in a registry host with port; type is before the first ':' and the
    actions after the last one.
    """
    parsed: list[tuple[str, str, list[str]]] = []
    for raw in scopes:
        for scope in raw.split(" "):
            if scope.count(":") < 2:
                continue
            kind, rest = scope.split(":", 1)
            name, actions = rest.rsplit(":", 1)
            name = FAULT_PREFIX.sub("", name)  # clients behind the fault proxy may ask for the prefixed name
            parsed.append((kind, name, [a for a in actions.split(",") if a]))
    return parsed


def grant(scopes: list[tuple[str, str, list[str]]], *, authenticated: bool) -> list[dict[str, Any]]:
    """What the token allows: everything asked for when authenticated, else pull only."""
    access: list[dict[str, Any]] = []
    for kind, name, actions in scopes:
        allowed = [a for a in actions if a in ALL_ACTIONS] if authenticated else [a for a in actions if a == "pull"]
        if kind not in ("repository", "registry"):
            allowed = []
        access.append({"type": kind, "name": name, "actions": allowed})
    return access


def issue_token(
    cfg: TokenServiceConfig, key: ec.EllipticCurvePrivateKey, subject: str, access: list[dict[str, Any]]
) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": cfg.issuer,
        "sub": subject,
        "aud": cfg.service,
        "exp": now + TOKEN_LIFETIME,
        "nbf": now - 1,
        "iat": now,
        "jti": secrets.token_hex(16),
        "access": access,
    }
    token = sign_jwt(claims, key)
    issued = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME, "issued_at": issued}


class TokenHandler(BaseHTTPRequestHandler):
    server: TokenServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle on, the body waits for the ACK of the headers
    # (up to 40 ms of delayed ACK per response). Real token services and CDNs set TCP_NODELAY.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # keep quiet; never log credentials
        return

    def _send_json(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _check(self, username: str | None, password: str | None) -> bool | None:
        """True: valid credentials; False: wrong ones; None: none given."""
        if username is None or password is None:
            return None
        cfg = self.server.cfg
        good_user = hmac.compare_digest(username, cfg.username)
        good_pass = hmac.compare_digest(hashlib.sha256(password.encode()).hexdigest(), cfg.password_sha256)
        return good_user and good_pass

    def _answer(self, username: str | None, password: str | None, service: str, scopes: list[str]) -> None:
        cfg = self.server.cfg
        if service and service != cfg.service:
            self._send_json(400, {"errors": [{"code": "UNSUPPORTED", "message": f"unknown service {service!r}"}]})
            return
        verdict = self._check(username, password)
        if verdict is False or (verdict is None and not cfg.anonymous_pull):
            self._send_json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                {"WWW-Authenticate": 'Basic realm="kubeplay-lab-token"'},
            )
            return
        access = grant(parse_scopes(scopes), authenticated=bool(verdict))
        subject = cfg.username if verdict else ""
        self._send_json(200, issue_token(cfg, self.server.signing_key, subject, access))

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_health":
            self._send_json(200, {"ok": True})
            return
        if url.path != "/token":
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        query = urllib.parse.parse_qs(url.query)
        username = password = None
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                username = password = ""
        self._answer(username, password, query.get("service", [""])[0], query.get("scope", []))

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(min(length, 65536)).decode(errors="replace"))
        if form.get("grant_type", [""])[0] != "password":
            self._send_json(400, {"error": "unsupported_grant_type"})
            return
        self._answer(
            form.get("username", [None])[0],
            form.get("password", [None])[0],
            form.get("service", [""])[0],
            form.get("scope", []),
        )


class TokenServer(TLSThreadingHTTPServer):
    def __init__(self, cfg: TokenServiceConfig) -> None:
        super().__init__(cfg.port, TokenHandler, cfg.cert, cfg.key)
        self.cfg = cfg
        key = serialization.load_pem_private_key(Path(cfg.signing_key).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SystemExit("token signing key must be an EC key")
        self.signing_key = key


def main(argv: list[str]) -> int:
    cfg = TokenServiceConfig(**json.loads(Path(argv[1]).read_text()))
    with TokenServer(cfg) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
