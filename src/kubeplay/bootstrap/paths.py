"""Where install writes on the deploy node. One place, so uninstall and tests (with a temp root) agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNIT_REGISTRY = "kubeplay-registry.service"
UNIT_NGINX = "kubeplay-nginx.service"


@dataclass(frozen=True)
class HostPaths:
    """Every system path install touches, all under `root` ("/" on a real node, tmp_path in tests)."""

    root: Path = Path("/")
    state_override: Path | None = None
    served_override: Path | None = None  # --served / KUBEPLAY_SERVED

    def _p(self, rel: str) -> Path:
        return self.root / rel

    @property
    def etc(self) -> Path:
        """/etc/kubeplay: rendered configs, certificates, keyrings."""
        return self._p("etc/kubeplay")

    @property
    def state(self) -> Path:
        """/var/lib/kubeplay: ledger, record of what was created, effective config, nginx temp dirs."""
        return self.state_override or self._p("var/lib/kubeplay")

    @property
    def served(self) -> Path:
        """/var/lib/kubeplay/served: what nginx and the registry serve, the union of every installed bundle."""
        return self.served_override or self.state / "served"

    @property
    def logs(self) -> Path:
        return self._p("var/log/kubeplay")

    @property
    def certs(self) -> Path:
        return self.etc / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs / "rootCA.crt"

    @property
    def ca_key(self) -> Path:
        return self.certs / "rootCA.key"

    @property
    def server_cert(self) -> Path:
        return self.certs / "domain.crt"

    @property
    def server_key(self) -> Path:
        return self.certs / "domain.key"

    @property
    def nginx_conf(self) -> Path:
        return self.etc / "nginx.conf"

    @property
    def registry_conf(self) -> Path:
        return self.etc / "registry.yml"

    @property
    def chrony_conf(self) -> Path:
        return self.etc / "chrony.conf"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.json"

    @property
    def record(self) -> Path:
        return self.state / "installed.json"

    @property
    def effective_config(self) -> Path:
        return self.state / "config.effective.yaml"

    @property
    def hosts_file(self) -> Path:
        return self._p("etc/hosts")

    @property
    def units(self) -> Path:
        return self._p("etc/systemd/system")

    @property
    def bin(self) -> Path:
        return self._p("usr/local/bin")

    @property
    def apt_sources(self) -> Path:
        return self._p("etc/apt/sources.list.d/kubeplay.sources")

    @property
    def apt_keyring(self) -> Path:
        return self.etc / "kubeplay-archive-keyring.gpg"

    @property
    def yum_repo(self) -> Path:
        return self._p("etc/yum.repos.d/kubeplay.repo")

    @property
    def rpm_key(self) -> Path:
        return self.etc / "RPM-GPG-KEY-kubeplay"

    @property
    def ca_trust_debian(self) -> Path:
        return self._p("usr/local/share/ca-certificates/kubeplay-rootCA.crt")

    @property
    def ca_trust_rhel(self) -> Path:
        return self._p("etc/pki/ca-trust/source/anchors/kubeplay-rootCA.crt")

    @property
    def chrony_main_candidates(self) -> tuple[Path, ...]:
        return (self._p("etc/chrony/chrony.conf"), self._p("etc/chrony.conf"))

    @property
    def policy_rc_d(self) -> Path:
        return self._p("usr/sbin/policy-rc.d")
