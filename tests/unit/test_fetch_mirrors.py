"""Mirror resolution, registry endpoints, credential sources (env, 0600 file) and URL redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeplay.config.bundle import BundleSpec
from kubeplay.console import Output
from kubeplay.errors import BadInput, ConfigError
from kubeplay.fetch.mirrors import load_mirrors, redact

SPEC = {
    "kubespray": {"version": "v2.31.0", "source": "/nonexistent"},
    "mirrors": {
        "dl.k8s.io": "https://nexus.example.test/repository/dl.k8s.io/",
        "registry.k8s.io": {"url": "https://harbor.example.test/k8s-proxy", "credentials": "harbor"},
        "docker.io": "https://hub-mirror.example.test",
    },
}


def spec(tmp_path: Path, **extra: object) -> BundleSpec:
    s = BundleSpec.model_validate({**SPEC, **extra})
    s.base_dir = tmp_path
    return s


ENV = {"KUBEPLAY_CRED_HARBOR_USERNAME": "robot", "KUBEPLAY_CRED_HARBOR_PASSWORD": "pw-from-env"}
QUIET = Output(quiet=True)


def test_file_urls_are_rewritten_and_others_left_alone(tmp_path: Path) -> None:
    mirrors = load_mirrors(spec(tmp_path), ENV, out=QUIET)
    r = mirrors.resolve("https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm")
    assert r.url == "https://nexus.example.test/repository/dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm"
    assert r.mirrored and r.credentials is None
    assert mirrors.resolve("https://github.com/x/y").url == "https://github.com/x/y"


def test_registry_endpoint_is_base_plus_repository_prefix(tmp_path: Path) -> None:
    mirrors = load_mirrors(spec(tmp_path), ENV, out=QUIET)
    ep = mirrors.registry("registry.k8s.io")
    assert (ep.base, ep.repository("pause")) == ("https://harbor.example.test", "k8s-proxy/pause")
    assert ep.credentials is not None and ep.credentials.password == "pw-from-env"
    # a blob URL under that prefix resolves back to the same credentials
    r = mirrors.resolve("https://harbor.example.test/v2/k8s-proxy/pause/blobs/sha256:00")
    assert r.credentials == ep.credentials
    hub = mirrors.registry("quay.io")
    assert (hub.base, hub.prefix, hub.credentials) == ("https://quay.io", "", None)
    assert mirrors.registry("docker.io").base == "https://hub-mirror.example.test"


def test_unmirrored_docker_hub_uses_its_api_host(tmp_path: Path) -> None:
    mirrors = load_mirrors(spec(tmp_path, mirrors={}), {}, out=QUIET)
    assert mirrors.registry("docker.io").base == "https://registry-1.docker.io"


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text("harbor: {username: robot, password: pw-from-file}\n")
    creds.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by group or others") as info:
        load_mirrors(spec(tmp_path, credentials_file=str(creds)), {}, out=QUIET)
    assert "pw-from-file" not in str(info.value) + str(info.value.hint)
    creds.chmod(0o600)
    mirrors = load_mirrors(spec(tmp_path, credentials_file=str(creds)), {}, out=QUIET)
    found = mirrors.registry("registry.k8s.io").credentials
    assert found is not None and found.password == "pw-from-file"


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text("harbor: {username: robot, password: pw-from-file}\n")
    creds.chmod(0o600)
    mirrors = load_mirrors(spec(tmp_path, credentials_file=str(creds)), ENV, out=QUIET)
    found = mirrors.registry("registry.k8s.io").credentials
    assert found is not None and found.password == "pw-from-env"


def test_missing_credentials_name_the_variables_to_set(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as info:
        load_mirrors(spec(tmp_path), {}, out=QUIET)
    assert "KUBEPLAY_CRED_HARBOR_USERNAME" in str(info.value.hint)


def test_redact_removes_userinfo() -> None:
    text = "failed https://robot:hunter2@harbor.example.test/v2/ and http://u@h/x"
    assert redact(text) == "failed https://harbor.example.test/v2/ and http://h/x"
