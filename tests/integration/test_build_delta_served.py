"""The delta `build --base` writes, added to a deploy node's served set by install's merge: a delta built
against what the node serves (its inventory), with a changed binary carried as a patch against the older
bundle, completes to the full new bundle, and both versions are served."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest

from kubeplay.assemble.delta import write_delta
from kubeplay.bootstrap.merge import add_bundle
from kubeplay.bootstrap.served import served_inventory, served_versions
from kubeplay.bundle.inventory import identity_of
from kubeplay.bundle.manifest import read_manifest, write_manifest, write_sha256sums
from kubeplay.console import Output

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.test_served_versions import two_versions  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration
TOOL = "files/dl.k8s.io/release/v{v}/bin/linux/amd64/tool0"


def test_a_built_delta_with_a_patch_is_completed_from_what_is_served(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    node, old, new_fixture = two_versions
    new = tmp_path / "out" / "bundle-1.35.4"
    shutil.copytree(new_fixture, new)
    # tool0 1.35.4: its 1.35.3 bytes with a changed stretch and a longer tail, as a patch release is
    data = (old / TOOL.format(v="1.35.3")).read_bytes()
    data = data[:1000] + b"changed!" + data[1008:] + b"more"
    (new / TOOL.format(v="1.35.4")).write_bytes(data)
    manifest = read_manifest(new)
    for record in manifest.files:
        if record.path == TOOL.format(v="1.35.4"):
            record.sha256, record.size = hashlib.sha256(data).hexdigest(), len(data)
    write_manifest(new, manifest)
    write_sha256sums(new, use_cache=False)

    result = write_delta(new, served_inventory(node.paths), base_content=old, out=Output(quiet=True))
    assert [p.path for p in result.record.patches] == [TOOL.format(v="1.35.4")]
    add_bundle(result.path, node.paths)
    assert node.check_version(old) == [] and node.check_version(new) == []
    (served,) = [v for v in served_versions(node.paths) if v.kube_version == "1.35.4"]
    assert served.identity == identity_of((new / "kubeplay.json").read_bytes())
    assert served.sums_path.read_text() == (new / "SHA256SUMS").read_text()
