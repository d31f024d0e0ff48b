"""Helm charts for the simulator, written with tarfile (no helm binary): packages, a chart repository's
index.yaml (static files on nginx) and OCI chart artifacts (pushed to its registry)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import yaml


def build_chart(
    name: str,
    version: str,
    *,
    app_version: str | None = None,
    values: Mapping[str, Any] | None = None,
    templates: Mapping[str, str] | None = None,
    dependencies: Sequence[Mapping[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
    subcharts: Sequence[bytes] = (),
) -> bytes:
    """A chart package `<name>-<version>.tgz` as `helm package` lays it out; vendored `subcharts` go under
    charts/ as packages. Byte-identical for identical input (fixed mtimes, gzip without a timestamp)."""
    meta: dict[str, Any] = {"apiVersion": "v2", "name": name, "version": version, "type": "application"}
    if app_version is not None:
        meta["appVersion"] = app_version
    if dependencies:
        meta["dependencies"] = [dict(d) for d in dependencies]
    if annotations:
        meta["annotations"] = dict(annotations)
    files: dict[str, bytes] = {
        "Chart.yaml": yaml.safe_dump(meta, sort_keys=False).encode(),
        "values.yaml": yaml.safe_dump(dict(values or {}), sort_keys=False).encode(),
    }
    for tname, text in (templates or {}).items():
        files[f"templates/{tname}"] = text.encode()
    for sub in subcharts:
        with tarfile.open(fileobj=io.BytesIO(sub), mode="r:gz") as tar:
            top = tar.getnames()[0].split("/", 1)[0]
            sub_meta = yaml.safe_load(tar.extractfile(f"{top}/Chart.yaml").read())  # type: ignore[union-attr]
        files[f"charts/{sub_meta['name']}-{sub_meta['version']}.tgz"] = sub
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"{name}/{path}")
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def chart_index(charts: Sequence[bytes], base_url: str | None = None) -> bytes:
    """index.yaml for `charts` as `helm repo index` writes it: urls relative (or under `base_url`), digests."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for data in charts:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            top = tar.getnames()[0].split("/", 1)[0]
            meta = yaml.safe_load(tar.extractfile(f"{top}/Chart.yaml").read())  # type: ignore[union-attr]
        filename = f"{meta['name']}-{meta['version']}.tgz"
        entry = {
            **meta,
            "urls": [f"{base_url.rstrip('/')}/{filename}" if base_url else filename],
            "digest": hashlib.sha256(data).hexdigest(),
        }
        entries.setdefault(str(meta["name"]), []).append(entry)
    return yaml.safe_dump({"apiVersion": "v1", "entries": entries}, sort_keys=False).encode()
