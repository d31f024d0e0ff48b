"""bundle.yaml errors name the file, the line/column or the field path, and exit with code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.config.bundle import load_bundle_spec
from kubeplay.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bundle.yaml"
    path.write_text(text)
    return path


def test_unknown_key_and_bad_arch_are_named_by_field_path(tmp_path: Path) -> None:
    path = write(tmp_path, "kubespray: {version: v2.31.0, source: x}\narches: [amd64, s390x]\nfoo: 1\n")
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(path)
    message = str(info.value)
    assert "arches: unknown arch 's390x'; supported: amd64, arm64" in message
    assert "foo: unknown key" in message
    assert str(path) in message


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "kubespray:\n  version: [v2.31.0\n")
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(path)
    assert f"{path}:3:1" in str(info.value)


def test_nested_field_path(tmp_path: Path) -> None:
    path = write(tmp_path, "kubespray: {version: v2.31.0, source: x}\nmirrors:\n  quay.io: {url: x, bogus: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(path)
    assert "mirrors.quay.io.bogus: unknown key" in str(info.value)


def test_list_shorthands_and_version_prefix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kubespray: {version: v2.31.0, source: x}\nkube_version: v1.35.4\nkube_network_plugin: cilium\n"
        "mirrors: {quay.io: 'https://mirror.invalid/quay'}\n",
    )
    spec = load_bundle_spec(path)
    assert spec.kube_version == "1.35.4"
    assert spec.kube_network_plugin == ["cilium"]
    assert spec.mirrors["quay.io"].url == "https://mirror.invalid/quay"
    assert spec.base_dir == tmp_path.resolve()


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "arches: [mips]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kubeplay", "plan", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "kubespray: Field required" in proc.stderr


def test_registry_binary_needs_a_digest_per_bundle_arch_and_an_http_url(tmp_path: Path) -> None:
    head = "kubespray: {version: v2.31.0, source: x}\narches: [amd64, arm64]\nregistry_binary:\n"
    url = "  url: https://example.invalid/registry_{arch}.tar.gz\n"
    path = write(tmp_path, head + url + f"  sha256: {{amd64: '{'a' * 64}'}}\n")
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(path)
    assert "registry_binary.sha256 has no digest for arm64" in str(info.value)
    path = write(
        tmp_path, head + "  url: ftp://x/registry.tar.gz\n" + f"  sha256: {{amd64: '{'a' * 64}', s390x: 'zz'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(path)
    assert "registry_binary.url: expected an http(s) URL" in str(info.value)
    assert "registry_binary.sha256: unknown arch 's390x'" in str(info.value)
    digests = f"  sha256: {{amd64: 'SHA256:{'A' * 64}', arm64: '{'b' * 64}'}}\n"
    spec = load_bundle_spec(write(tmp_path, head + url + digests))
    assert spec.registry_binary is not None and spec.registry_binary.sha256["amd64"] == "a" * 64
    assert spec.registry_binary.url_for("arm64") == "https://example.invalid/registry_arm64.tar.gz"
