"""UpstreamSimulator: the internet kubespray downloads from, rebuilt on loopback from real parts.

    with UpstreamSimulator(tmp_path / "upstream") as sim:
        sha = sim.add_file("https://dl.k8s.io/release/v1.31.0/bin/linux/amd64/kubeadm", data)
        info = sim.push_image("registry.k8s.io/pause:3.10", ["amd64", "arm64"])
        spec_mirrors = sim.mirrors()      # for bundle.yaml `mirrors:`
        sim.credentials_file(tmp_path / "creds.yaml")

Registry: docker-registry with TLS from a throwaway CA; auth none, basic (htpasswd) or token (our token
service). Files: nginx serving files/<host>/<path>. Faults: see kubeplay.lab.upstream.faults.
Every process is started by us and stopped by PID on exit.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from types import TracebackType

import httpx
import yaml

from kubeplay.catalog.chart_oci import MANIFEST_MEDIA_TYPE, chart_artifact, oci_tag
from kubeplay.catalog.charts import read_chart
from kubeplay.catalog.model import FileArtifact, ImageArtifact
from kubeplay.errors import KubeplayError
from kubeplay.lab.upstream.charts import chart_index
from kubeplay.lab.upstream.cosign import cosign_artifacts
from kubeplay.lab.upstream.files import (
    place_file,
    place_file_from,
    start_fault_server,
    start_nginx,
    start_python_server,
    url_to_relpath,
)
from kubeplay.lab.upstream.images import (
    OCI_MANIFEST,
    ImageInfo,
    IndexFormat,
    build_index,
    build_platform_image,
    check_arches,
    parse_upstream_ref,
)
from kubeplay.lab.upstream.kubespray import (
    KubesprayArchive,
    SyntheticDownload,
    build_kubespray_archive,
    downloads_from_plan,
    read_checksums_text,
    synthetic_payload,
)
from kubeplay.lab.upstream.pki import TestPKI, create_test_pki
from kubeplay.lab.upstream.process import ServerProcess
from kubeplay.lab.upstream.push import RegistryPusher
from kubeplay.lab.upstream.registry import (
    TOKEN_ISSUER,
    TOKEN_SERVICE,
    AuthMode,
    RegistryConfig,
    start_registry,
    write_htpasswd,
)
from kubeplay.lab.upstream.token_service import TokenServiceConfig
from kubeplay.state import atomic_write

FILE_HOSTS = (
    "github.com",
    "dl.k8s.io",
    "storage.googleapis.com",
    "get.helm.sh",
    "raw.githubusercontent.com",
    "objects.githubusercontent.com",
)
REGISTRY_HOSTS = ("registry.k8s.io", "quay.io", "docker.io", "ghcr.io", "gcr.io", "mcr.microsoft.com")
CREDENTIALS_NAME = "simulator"


class UpstreamSimulator:
    """Context manager: starts the registry, token service, nginx and fault server; stops them by PID."""

    def __init__(
        self,
        workdir: Path,
        *,
        registry_auth: AuthMode = "token",
        username: str = "kubeplay",
        password: str | None = None,
        anonymous_pull: bool = False,
    ) -> None:
        if registry_auth not in ("none", "basic", "token"):
            raise KubeplayError(f"unknown registry_auth {registry_auth!r}; use none, basic or token")
        self.workdir = workdir.resolve()
        self.registry_auth: AuthMode = registry_auth
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.anonymous_pull = anonymous_pull
        self.files_root = self.workdir / "files" / "www"
        self.processes: list[ServerProcess] = []
        self._pki: TestPKI | None = None
        self._file_hosts: set[str] = set(FILE_HOSTS)
        self._registry_hosts: set[str] = set(REGISTRY_HOSTS)
        self.registry_url = ""
        self.files_url = ""
        self.faults_url = ""
        self.token_url = ""

    def __repr__(self) -> str:  # never shows the password
        return f"UpstreamSimulator(registry={self.registry_url!r}, files={self.files_url!r}, auth={self.registry_auth})"

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def pki(self) -> TestPKI:
        if self._pki is None:
            raise KubeplayError("the upstream simulator is not started; use it as a context manager")
        return self._pki

    @property
    def ca_cert(self) -> Path:
        """PEM of the test CA; trust it for every simulator endpoint."""
        return self.pki.ca_cert

    @property
    def cert_dir(self) -> Path:
        """A directory holding only ca.crt, for `skopeo --cert-dir` / containerd certs.d."""
        return self.pki.cert_dir

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting only the test CA (for httpx `verify=`)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def start(self) -> UpstreamSimulator:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._pki = create_test_pki(self.workdir / "pki")
            self._start_registry()
            nginx = start_nginx(self.workdir / "files", self.files_root, self.pki)
            self.processes.append(nginx)
            self.files_url = f"https://127.0.0.1:{nginx.port}"
            faults = start_fault_server(self.workdir / "faults", self.files_root, self.pki, self.registry_url)
            self.processes.append(faults)
            self.faults_url = f"https://127.0.0.1:{faults.port}"
        except BaseException:
            self.stop()
            raise
        return self

    def _start_registry(self) -> None:
        registry_dir = self.workdir / "registry"
        registry_dir.mkdir(parents=True, exist_ok=True)
        cfg = RegistryConfig(port=0, storage=registry_dir / "storage", auth=self.registry_auth)
        if self.registry_auth == "basic":
            htpasswd = registry_dir / "htpasswd"
            write_htpasswd(htpasswd, self.username, self.password)
            cfg = RegistryConfig(**{**cfg.__dict__, "htpasswd": htpasswd})
        elif self.registry_auth == "token":
            token_cfg = TokenServiceConfig(
                port=0,
                cert=str(self.pki.server_cert),
                key=str(self.pki.server_key),
                signing_key=str(self.pki.token_key),
                issuer=TOKEN_ISSUER,
                service=TOKEN_SERVICE,
                username=self.username,
                password_sha256=hashlib.sha256(self.password.encode()).hexdigest(),
                anonymous_pull=self.anonymous_pull,
            )
            token = start_python_server(
                "token-service",
                "kubeplay.lab.upstream.token_service",
                asdict(token_cfg),
                self.workdir / "token",
                self.pki.ca_cert,
            )
            self.processes.append(token)
            self.token_url = f"https://127.0.0.1:{token.port}/token"
            cfg = RegistryConfig(
                **{**cfg.__dict__, "token_realm": self.token_url, "token_rootcertbundle": self.pki.token_cert}
            )
        registry = start_registry(registry_dir, self.pki, cfg)
        self.processes.append(registry)
        self.registry_url = f"https://127.0.0.1:{registry.port}"

    def stop(self) -> None:
        """Stop every process we started, newest first, by PID."""
        for proc in reversed(self.processes):
            proc.stop()

    def __enter__(self) -> UpstreamSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- files ---------------------------------------------------------------------------------------

    def add_file(self, url: str, data: bytes) -> str:
        """Serve `data` at the upstream URL's <host>/<path> (on files_url and faults_url); return sha256 hex."""
        sha = place_file(self.files_root, url, data)
        self._file_hosts.add(url_to_relpath(url).split("/", 1)[0])
        return sha

    def add_file_from(self, url: str, source: Path) -> str:
        """Like add_file, streaming a file from disk (for large payloads); return sha256 hex."""
        sha = place_file_from(self.files_root, url, source)
        self._file_hosts.add(url_to_relpath(url).split("/", 1)[0])
        return sha

    def file_url(self, url: str) -> str:
        """Where the healthy file server serves an upstream URL."""
        return f"{self.files_url}/{url_to_relpath(url)}"

    def fault_url(self, fault: str, url: str) -> str:
        """Where the fault server serves `url` misbehaving as `fault` (e.g. "fail/2", "cut/1000", "corrupt")."""
        return f"{self.faults_url}/{fault.strip('/')}/{url_to_relpath(url)}"

    def registry_fault_mirror(self, fault: str, host: str) -> str:
        """A registry mirror url whose blob/manifest GETs misbehave as `fault` (e.g. "cut/1000", "corrupt/0").

        Base is faults_url, repository prefix `fault/<kind>/<n>/<host>/`; everything else is proxied to the
        real registry, auth included.
        """
        return f"{self.faults_url}/fault/{fault.strip('/')}/{host}"

    def fault_requests(self) -> list[dict[str, object]]:
        """Every request the fault server saw: method, path, range, status, body bytes sent."""
        response = httpx.get(f"{self.faults_url}/_requests", verify=self.ssl_context(), timeout=10.0)
        response.raise_for_status()
        entries: list[dict[str, object]] = response.json()
        return entries

    def reset_faults(self) -> None:
        """Forget the fault server's per-path counters and request log."""
        httpx.post(f"{self.faults_url}/_reset", verify=self.ssl_context(), timeout=10.0).raise_for_status()

    # -- images --------------------------------------------------------------------------------------

    def publish_signatures(self, info: ImageInfo, digests: list[str] | None = None) -> list[str]:
        """Push cosign-shaped signature artifacts for the image `info` (its top digest, or `digests`):
        `.sig`/`.att`/`.sbom` tags and an OCI 1.1 referrer behind the tag-schema index. Returns the tags."""
        tags: list[str] = []
        with RegistryPusher(self.registry_url, self.ca_cert, self.username, self.password) as pusher:
            for digest in digests or [info.digest]:
                media_type = info.media_type if digest == info.digest else OCI_MANIFEST
                subject = {"mediaType": media_type, "digest": digest, "size": info.sizes.get(digest, 0)}
                for artifact in cosign_artifacts(info.repository, subject):
                    for blob in artifact.blobs:
                        pusher.push_blob(info.repository, blob.data)
                    reference = artifact.tag or artifact.manifest.digest
                    pusher.push_manifest(
                        info.repository, reference, artifact.manifest.media_type, artifact.manifest.data
                    )
                    if artifact.tag:
                        tags.append(artifact.tag)
        return tags

    def push_image(
        self,
        upstream_ref: str,
        arches: list[str],
        *,
        base: str = "shared",
        layer_kib: int = 64,
        index_format: IndexFormat = "oci",
        variant_arm64: bool = False,
        as_index: bool | None = None,
    ) -> ImageInfo:
        """Write a real image into the registry at repository "<upstream-host>/<path>" through its HTTP API.

        One platform manifest per arch (arm64 with variant v8 when `variant_arm64`); with more than one arch
        (or `as_index=True`) the tag points at an OCI index / Docker manifest list, else at the manifest.
        """
        ref = parse_upstream_ref(upstream_ref)
        arches = check_arches(arches)
        platforms = [
            build_platform_image(
                ref,
                arch,
                "v8" if arch == "arm64" and variant_arm64 else None,
                base=base,
                layer_kib=layer_kib,
                fmt=index_format,
            )
            for arch in arches
        ]
        info = ImageInfo(reference=str(ref), repository=ref.repository, tag=ref.tag, digest="", media_type="")
        with RegistryPusher(self.registry_url, self.ca_cert, self.username, self.password) as pusher:
            for p in platforms:
                for blob in (*p.layers, p.config):
                    pusher.push_blob(ref.repository, blob.data)
                    if blob.digest not in info.sizes:
                        info.blobs.append(blob.digest)
                        info.sizes[blob.digest] = len(blob.data)
            use_index = as_index if as_index is not None else len(platforms) > 1
            if use_index:
                for p in platforms:
                    pusher.push_manifest(ref.repository, p.manifest.digest, p.manifest.media_type, p.manifest.data)
                    info.manifests[p.platform] = p.manifest.digest
                    info.sizes[p.manifest.digest] = len(p.manifest.data)
                index = build_index(platforms, index_format)
                info.digest = pusher.push_manifest(ref.repository, ref.tag, index.media_type, index.data)
                info.media_type = index.media_type
                info.sizes[index.digest] = len(index.data)
            else:
                only = platforms[0]
                info.digest = pusher.push_manifest(
                    ref.repository, ref.tag, only.manifest.media_type, only.manifest.data
                )
                info.media_type = only.manifest.media_type
                info.manifests[only.platform] = only.manifest.digest
                info.sizes[only.manifest.digest] = len(only.manifest.data)
        self._registry_hosts.add(ref.host)
        return info

    def push_plan_images(
        self, images: Iterable[ImageArtifact], arches: list[str], *, layer_kib: int = 64
    ) -> tuple[dict[str, ImageInfo], list[str]]:
        """Push every tagged image of a catalog plan for `arches`.

        Returns ({upstream reference: ImageInfo}, [references skipped because kubespray pins them by digest
        only — no synthetic image can have that digest]).
        """
        pushed: dict[str, ImageInfo] = {}
        skipped: list[str] = []
        for image in images:
            if not image.tag:
                skipped.append(image.upstream)
                continue
            ref = f"{image.registry}/{image.repository}:{image.tag}"
            if ref not in pushed:
                pushed[ref] = self.push_image(ref, arches, layer_kib=layer_kib, variant_arm64=True)
        return pushed, skipped

    # -- Helm charts ---------------------------------------------------------------------------------

    def add_chart_repo(self, repo_url: str, charts: Iterable[bytes]) -> bytes:
        """Serve a classic chart repository at `repo_url` (static files on nginx): every package as
        <name>-<version>.tgz and an index.yaml listing them with their digests; return the index."""
        packages = list(charts)
        for data in packages:
            meta = read_chart(data)
            self.add_file(f"{repo_url.rstrip('/')}/{meta.name}-{meta.version}.tgz", data)
        index = chart_index(packages)
        self.add_file(f"{repo_url.rstrip('/')}/index.yaml", index)
        return index

    def push_chart(self, oci_repo: str, chart: bytes) -> str:
        """Push a chart package as `helm push` does, to oci://<host>/<path>/<name>:<version>; return the
        manifest digest."""
        meta = read_chart(chart)
        host, _, path = oci_repo.removeprefix("oci://").rstrip("/").partition("/")
        repository = f"{host}/{path}/{meta.name}" if path else f"{host}/{meta.name}"
        artifact = chart_artifact(chart, meta.metadata)
        with RegistryPusher(self.registry_url, self.ca_cert, self.username, self.password) as pusher:
            pusher.push_blob(repository, artifact.config)
            pusher.push_blob(repository, artifact.chart)
            digest = pusher.push_manifest(repository, oci_tag(meta.version), MANIFEST_MEDIA_TYPE, artifact.manifest)
        self._registry_hosts.add(host)
        return digest

    # -- kubespray -------------------------------------------------------------------------------------

    def add_kubespray(
        self,
        source: Path,
        downloads: Iterable[SyntheticDownload] | None = None,
        *,
        plan_files: Iterable[FileArtifact] | None = None,
        payload_kib: int = 8,
    ) -> KubesprayArchive:
        """Serve synthetic payloads for kubespray's downloads and a kubespray archive whose checksums match.

        `downloads` explicit, and/or `plan_files` (a catalog plan's files, matched to checksum entries by
        their current sha256; every plan file is served). For a whole release as `kubeplay build` plans it,
        use kubeplay.lab.upstream.release.serve_release. The archive is written under workdir/kubespray and
        also served at GitHub's tag URL https://github.com/kubernetes-sigs/kubespray/archive/refs/tags/v<X.Y.Z>.tar.gz.
        """
        text = read_checksums_text(source)
        chosen = list(downloads or ())
        urls: list[str] = []
        if plan_files is not None:
            plan_list = list(plan_files)
            chosen += downloads_from_plan(text, plan_list)
            urls = [f.url for f in plan_list]
        urls = list(dict.fromkeys([*urls, *(d.url for d in chosen)]))
        payloads = {url: synthetic_payload(url, payload_kib * 1024) for url in urls}
        for url, data in payloads.items():
            self.add_file(url, data)
        archive = build_kubespray_archive(source, self.workdir / "kubespray", chosen, payloads)
        archive.files = {url: hashlib.sha256(data).hexdigest() for url, data in payloads.items()}
        archive.url = f"https://github.com/kubernetes-sigs/kubespray/archive/refs/tags/v{archive.version}.tar.gz"
        self.add_file_from(archive.url, archive.path)
        return archive

    # -- for bundle.yaml -----------------------------------------------------------------------------

    def mirrors(self) -> dict[str, dict[str, object]]:
        """`mirrors:` for bundle.yaml: every known upstream host -> {url, ca[, credentials]}.

        File hosts: url replaces `https://<host>` (https://127.0.0.1:P/<host>). Registry hosts: url is
        https://127.0.0.1:P/<host>, i.e. registry base plus repository prefix `<host>/`.
        """
        out: dict[str, dict[str, object]] = {}
        for host in sorted(self._file_hosts):
            out[host] = {"url": f"{self.files_url}/{host}", "ca": str(self.ca_cert)}
        for host in sorted(self._registry_hosts):
            entry: dict[str, object] = {"url": f"{self.registry_url}/{host}", "ca": str(self.ca_cert)}
            if self.registry_auth != "none":
                entry["credentials"] = CREDENTIALS_NAME
            out[host] = entry
        return out

    def credentials_file(self, path: Path) -> Path:
        """Write {"simulator": {username, password}} as YAML, mode 0600; return the path."""
        body = {CREDENTIALS_NAME: {"username": self.username, "password": self.password}}
        atomic_write(path, yaml.safe_dump(body, sort_keys=False).encode(), mode=0o600)
        return path
