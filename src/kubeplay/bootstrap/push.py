"""`kubeplay push`: copy every image of a bundle's registry storage into an existing registry (Harbor, …).

Blobs are checked with HEAD and skipped when present (so an interrupted push resumes), mounted across
repositories when the registry supports it, uploaded in parallel otherwise; manifests go last, children
before the index or tag that names them, so a tag never points at something incomplete.

An image whose tag names upstream's index while the bundle holds only some of its platforms (the bundle
keeps that index byte-exact so upstream's signatures of it apply) goes with the index cut to the bundled
platforms (kubeplay.json `cut_index`): children, then the cut index by digest; then upstream's index is put
under the tag, and where the registry refuses it (it checks that every platform listed is present, as
distribution and Harbor do) the cut index is, and the report names the image.

A connection that breaks mid-request (a reset, a timeout, a 502/503/504 from a proxy in front of the
registry) does not end the push: the whole step is tried again with backoff — a blob from its HEAD
(it may have arrived before the answer was lost), a manifest from its HEAD — so a retry never sends a
chunk twice into one upload session. Bounded in count and time (fetch.retry.RetryPolicy). Ctrl-C stops
the uploads within about a second (fetch.workers) and raises Interrupted; a re-run skips what arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from kubeplay import settings
from kubeplay.bootstrap.registry import TaggedImage, blob_path, manifest_children, tagged_images, untagged_images
from kubeplay.bundle.manifest import MANIFEST_NAME, read_manifest
from kubeplay.errors import AuthFailed, BadInput, BundleError, FetchError, Interrupted
from kubeplay.fetch.clients import ClientPool, Session
from kubeplay.fetch.mirrors import Credentials, Tls
from kubeplay.fetch.retry import RetryPolicy, TransientError, describe
from kubeplay.fetch.workers import WorkerPool

# Faults after which the step may succeed when tried again. Not ConnectError: a refused connection or a
# certificate the CA does not sign is an answer about --registry/--ca, reported at once.
TRANSIENT = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.TimeoutException)
TRANSIENT_STATUS = frozenset({502, 503, 504})
_T = TypeVar("_T")

CHUNK = 64 * 1024 * 1024


class RefusedManifest(FetchError):
    """The registry refused a manifest (HTTP 400), e.g. one listing something it does not hold."""


@dataclass(frozen=True)
class Target:
    host: str  # host[:port]
    prefix: str  # replaces the bundle's first path component (the Harbor project); "" keeps it
    scheme: str = "https"

    @classmethod
    def parse(cls, spec: str, plain_http: bool = False) -> Target:
        spec = spec.strip().rstrip("/")
        if "://" in spec:
            raise BadInput(
                f"--registry {spec}: give HOST[:PORT][/PREFIX] without a scheme", hint="use --plain-http for HTTP"
            )
        host, _, prefix = spec.partition("/")
        if not host:
            raise BadInput("--registry: empty host")
        return cls(host=host, prefix=prefix, scheme="http" if plain_http else "https")

    def repository(self, bundle_repo: str) -> str:
        if not self.prefix:
            return bundle_repo
        _, _, rest = bundle_repo.partition("/")
        return f"{self.prefix}/{rest}" if rest else f"{self.prefix}/{bundle_repo}"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


@dataclass
class PushReport:
    images: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    bytes_uploaded: int = 0
    manifests_put: int = 0
    manifests_present: int = 0
    # repository:tag that got the cut index because the registry refused upstream's with platforms absent
    tagged_cut: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


@dataclass(frozen=True)
class ImagePlan:
    """One tagged image: its manifests (children first) and the blobs each repository needs."""

    image: TaggedImage
    repository: str
    manifests: list[tuple[str, str]]  # (digest, media type), children first, top-level last
    blobs: list[str]
    upstream_index: str | None = None  # put under the tag first when set (the top-level one if refused)


def _walk(storage: Path, img: TaggedImage, digest: str, manifests: list[tuple[str, str]], blobs: list[str]) -> None:
    """Collect manifests (children first) and blobs under `digest`; BundleError names a missing blob."""
    media, children, layer_blobs = manifest_children(storage, digest)
    for child in children:
        _check_blob(storage, img, child)
        _walk(storage, img, child, manifests, blobs)
    for b in layer_blobs:
        _check_blob(storage, img, b)
        if b not in blobs:
            blobs.append(b)
    manifests.append((digest, media))


def _check_blob(storage: Path, img: TaggedImage, digest: str) -> None:
    if not blob_path(storage, digest).exists():
        raise BundleError(
            f"{img.repository}:{img.tag}: blob {digest} is missing from the bundle", hint="run `kubeplay verify`"
        )


def plan_push(
    storage: Path, target: Target, cut_indexes: Mapping[tuple[str, str], str] | None = None
) -> list[ImagePlan]:
    """Walk the bundle registry storage; raise BundleError if a referenced blob is missing.

    `cut_indexes`: (repository, upstream index digest) -> the index cut to the bundled platforms, whose
    tree is pushed in place of the upstream index's (see the module docstring)."""
    cuts = cut_indexes or {}
    plans: list[ImagePlan] = []
    for img in tagged_images(storage):
        cut = cuts.get((img.repository, img.digest))
        manifests: list[tuple[str, str]] = []
        blobs: list[str] = []
        _check_blob(storage, img, img.digest)
        _walk(storage, img, cut or img.digest, manifests, blobs)
        plans.append(ImagePlan(img, target.repository(img.repository), manifests, blobs, img.digest if cut else None))
    pushed_with_tag = {(p.image.repository, p.manifests[-1][0]) for p in plans}
    for img in untagged_images(storage):  # pinned by digest only, pushed so
        if (img.repository, img.digest) in pushed_with_tag:
            continue
        manifests, blobs = [], []
        _check_blob(storage, img, img.digest)
        _walk(storage, img, img.digest, manifests, blobs)
        plans.append(ImagePlan(img, target.repository(img.repository), manifests, blobs))
    return plans


class Pusher:
    """Copies planned images into the target registry; `stop` (set on Ctrl-C) ends every upload and backoff."""

    def __init__(
        self,
        storage: Path,
        target: Target,
        session: Session,
        jobs: int = 4,
        policy: RetryPolicy | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.storage = storage
        self.target = target
        self.session = session
        self.jobs = jobs
        self.policy = policy or RetryPolicy(attempts=4, deadline=300)
        self.stop = stop or threading.Event()
        self.report = PushReport()

    def _retrying(self, step: Callable[[], _T]) -> _T:
        """Run `step`; on a transient failure run it again after a backoff, while the policy allows.

        Raises FetchError when the tries are used up, Interrupted when the push is being stopped.
        """
        clock = self.policy.start()
        while True:
            if self.stop.is_set():
                raise Interrupted("push stopped")
            try:
                return step()
            except TransientError as exc:
                clock.back_off(exc, self.stop, hint="check the network to the registry")

    def _req(self, method: str, url: str, **kw: object) -> httpx.Response:
        try:
            return self.session.client.request(method, url, auth=self.session.auth, **kw)  # type: ignore[arg-type]
        except AuthFailed as exc:
            raise AuthFailed(
                f"{self.target.host}: {exc}", hint="set KUBEPLAY_PUSH_USERNAME/PASSWORD or --credentials-file"
            ) from exc
        except TRANSIENT as exc:
            raise TransientError(f"{method} {url}: {describe(exc)}") from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"{method} {url}: {exc}", hint="check --registry, --ca and the network") from exc

    def _fail(self, what: str, r: httpx.Response) -> Exception:
        """The error for an unexpected answer: TransientError (the step is tried again) for 502/503/504."""
        detail = r.text[:200].strip().replace("\n", " ")
        message = f"{what}: HTTP {r.status_code} from {self.target.host}: {detail}"
        return TransientError(message) if r.status_code in TRANSIENT_STATUS else FetchError(message)

    def _abs(self, location: str) -> str:
        return location if "://" in location else self.target.base + location

    def has_blob(self, repo: str, digest: str) -> bool:
        r = self._req("HEAD", f"{self.target.base}/v2/{repo}/blobs/{digest}")
        return r.status_code == 200

    def upload(self, repo: str, digest: str, mount_from: str | None) -> str:
        """Make `digest` present in `repo`; return 'present', 'mounted' or 'uploaded'."""
        if self.has_blob(repo, digest):
            return "present"
        url = f"{self.target.base}/v2/{repo}/blobs/uploads/"
        params = {"mount": digest, "from": mount_from} if mount_from else None
        r = self._req("POST", url, params=params)
        if r.status_code == 201:
            return "mounted"
        if r.status_code != 202 or "location" not in r.headers:
            raise self._fail(f"start upload of {digest} to {repo}", r)
        location = self._abs(r.headers["location"])
        path = blob_path(self.storage, digest)
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size <= CHUNK:
                body = fh.read()
            else:
                offset = 0
                while offset < size - CHUNK:
                    chunk = fh.read(CHUNK)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    }
                    r = self._req("PATCH", location, content=chunk, headers=headers)
                    if r.status_code != 202:
                        raise self._fail(f"upload chunk of {digest} to {repo}", r)
                    location = self._abs(r.headers["location"])
                    offset += len(chunk)
                body = fh.read()
        sep = "&" if "?" in location else "?"
        r = self._req(
            "PUT", f"{location}{sep}digest={digest}", content=body, headers={"Content-Type": "application/octet-stream"}
        )
        if r.status_code not in (201, 204):
            raise self._fail(f"finish upload of {digest} to {repo}", r)
        self.report.add(bytes_uploaded=size)
        return "uploaded"

    def put_manifest(self, repo: str, digest: str, media: str, reference: str) -> bool:
        """PUT a manifest under `reference` (digest or tag) unless that reference already resolves to it."""
        url = f"{self.target.base}/v2/{repo}/manifests/{reference}"
        head = self._req("HEAD", url, headers={"Accept": media})
        if head.status_code == 200 and head.headers.get("docker-content-digest") == digest:
            return False
        body = blob_path(self.storage, digest).read_bytes()
        r = self._req(
            "PUT", url, content=body, headers={"Content-Type": media or "application/vnd.oci.image.manifest.v1+json"}
        )
        if r.status_code == 400:  # MANIFEST_BLOB_UNKNOWN from distribution and Harbor; others word it otherwise
            raise RefusedManifest(str(self._fail(f"put manifest {repo}:{reference}", r)))
        if r.status_code not in (201, 204):
            raise self._fail(f"put manifest {repo}:{reference}", r)
        return True

    def run(self, plans: list[ImagePlan]) -> PushReport:
        """Push every planned image; raises FetchError, or Interrupted on Ctrl-C (a re-run skips what arrived)."""
        try:
            self._blobs(plans)
            self._manifests(plans)
        except KeyboardInterrupt as exc:
            self.stop.set()
            r = self.report
            raise Interrupted(
                f"push to {self.target.host} interrupted: {r.images} of {len(plans)} image(s) complete, "
                f"{r.blobs_uploaded + r.blobs_mounted + r.blobs_present} blob(s) in place; "
                "a re-run skips the blobs and manifests already there"
            ) from exc
        return self.report

    def _blobs(self, plans: list[ImagePlan]) -> None:
        # One task per unique blob: upload into the first repository needing it, mount into the others.
        needs: dict[str, list[str]] = {}
        for p in plans:
            for b in p.blobs:
                repos = needs.setdefault(b, [])
                if p.repository not in repos:
                    repos.append(p.repository)

        failed = threading.Event()  # set by the first blob that fails: the others not yet started are skipped

        def place(digest: str, repos: list[str]) -> None:
            if failed.is_set():
                return
            source: str | None = None
            try:
                for repo in repos:
                    how = self._retrying(lambda: self.upload(repo, digest, source))  # noqa: B023 - called at once
                    self.report.add(
                        blobs_present=how == "present", blobs_mounted=how == "mounted", blobs_uploaded=how == "uploaded"
                    )
                    source = source or repo
            except BaseException:
                failed.set()
                raise

        with WorkerPool(self.jobs, "kubeplay-push", self.stop) as pool:
            futures = [pool.submit(place, d, repos) for d, repos in needs.items()]
            for f in as_completed(futures):
                f.result()

    def _manifests(self, plans: list[ImagePlan]) -> None:
        for p in plans:
            last = len(p.manifests) - (0 if p.upstream_index else 1)  # a cut index goes by digest too
            for digest, media in p.manifests[:last]:
                put = self._retrying(lambda: self.put_manifest(p.repository, digest, media, digest))  # noqa: B023
                self.report.add(**{"manifests_put" if put else "manifests_present": 1})
            top, media = p.manifests[-1]
            if p.upstream_index:
                try:
                    upstream = p.upstream_index
                    put = self._retrying(lambda: self.put_manifest(p.repository, upstream, media, p.image.tag))  # noqa: B023
                    self.report.add(**{"manifests_put" if put else "manifests_present": 1}, images=1)
                    continue
                except RefusedManifest:
                    self.report.tagged_cut.append(f"{p.repository}:{p.image.tag}")
            put = self._retrying(lambda: self.put_manifest(p.repository, top, media, p.image.tag))  # noqa: B023
            self.report.add(**{"manifests_put" if put else "manifests_present": 1}, images=1)


def load_credentials(env: dict[str, str], file: Path | None) -> Credentials | None:
    """Credentials from KUBEPLAY_PUSH_USERNAME/PASSWORD, or a 0600 file of `username:`/`password:` lines."""
    if file is not None:
        try:
            mode = file.stat().st_mode & 0o777
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"{file}: cannot read credentials: {exc.strerror}") from None
        if mode & 0o077:
            raise BadInput(f"{file}: credentials file is readable by others (mode {mode:o})", hint=f"chmod 600 {file}")
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                values[key.strip().lower()] = value.strip().strip("'\"")
        if not values.get("username") or "password" not in values:
            raise BadInput(f"{file}: expected `username:` and `password:` lines")
        return Credentials(values["username"], values["password"])
    user = env.get(settings.PUSH_USERNAME)
    if user:
        return Credentials(user, env.get(settings.PUSH_PASSWORD, ""))
    return None


def push_bundle(
    bundle_dir: Path, target: Target, ca: Path | None, credentials: Credentials | None, jobs: int = 4
) -> PushReport:
    """Copy every tagged image of the bundle into `target`; return counts. Raises FetchError/BundleError/Interrupted."""
    storage = bundle_dir / "registry"
    if not (storage / "docker/registry/v2").is_dir():
        raise BundleError(
            f"{bundle_dir}: no registry storage (registry/docker/registry/v2)", hint="pass an unpacked bundle directory"
        )
    records = read_manifest(bundle_dir).images if (bundle_dir / MANIFEST_NAME).is_file() else []
    cuts = {(r.repository, r.digest): r.cut_index for r in records if r.cut_index}
    plans = plan_push(storage, target, cuts)
    with ClientPool(connections=jobs, timeout=300) as pool:
        session = pool.session(Tls(ca=ca), credentials, label=target.host)
        return Pusher(storage, target, session, jobs, stop=pool.stop).run(plans)
