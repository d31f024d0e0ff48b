"""SPDX 2.3 JSON from a bundle's `sbom.cdx.json`, for sites that require SPDX.

A plain mapping of the CycloneDX document kubeplay writes (no CycloneDX library needed, so it also runs
on the deploy node): each component becomes a package with its sha256, package URL and bundle path; the
bundle CONTAINS every top-level component and an image index DEPENDS_ON its per-arch manifests.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubeplay.bundle.sbom import PATH_PROPERTY
from kubeplay.errors import BadInput

_PURPOSES = {
    "application": "APPLICATION",
    "framework": "FRAMEWORK",
    "library": "LIBRARY",
    "container": "CONTAINER",
    "operating-system": "OPERATING-SYSTEM",
    "firmware": "FIRMWARE",
    "file": "FILE",
}
NOASSERTION = "NOASSERTION"


def _spdx_id(index: int, ref: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9.-]+", "-", ref)[:80].strip("-")
    return f"SPDXRef-{index}-{tail}" if tail else f"SPDXRef-{index}"


def _package(component: dict[str, Any], spdx_id: str) -> dict[str, Any]:
    package: dict[str, Any] = {
        "SPDXID": spdx_id,
        "name": component.get("name", "unnamed"),
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": _PURPOSES.get(component.get("type", ""), "OTHER"),
    }
    if component.get("version"):
        package["versionInfo"] = component["version"]
    for reference in component.get("externalReferences", []):
        if reference.get("type") == "distribution":
            package["downloadLocation"] = reference["url"]
    hashes = [h["content"] for h in component.get("hashes", []) if h.get("alg") == "SHA-256"]
    if hashes:
        package["checksums"] = [{"algorithm": "SHA256", "checksumValue": hashes[0]}]
    if component.get("purl"):
        package["externalRefs"] = [
            {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": component["purl"]}
        ]
    properties = {p["name"]: p.get("value", "") for p in component.get("properties", [])}
    if properties.get(PATH_PROPERTY):
        package["comment"] = f"bundle path: {properties[PATH_PROPERTY]}"
    if component.get("description"):
        package["description"] = component["description"]
    return package


def cyclonedx_to_spdx(cyclonedx_text: str) -> dict[str, Any]:
    """The SPDX 2.3 document (JSON data) for kubeplay's CycloneDX SBOM text; BadInput when it is not one."""
    try:
        document = json.loads(cyclonedx_text)
    except ValueError as exc:
        raise BadInput(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise BadInput("not a CycloneDX JSON document", hint="pass a bundle directory or its sbom.cdx.json")
    metadata = document.get("metadata", {})
    root = metadata.get("component", {"bom-ref": "bundle", "name": "kubeplay-bundle", "type": "platform"})
    components = [root, *document.get("components", [])]
    ids = {c.get("bom-ref", str(i)): _spdx_id(i, c.get("bom-ref", "")) for i, c in enumerate(components)}
    packages = [_package(c, ids[c.get("bom-ref", str(i))]) for i, c in enumerate(components)]
    root_id = ids[root.get("bom-ref", "0")]
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root_id}
    ]
    for dependency in document.get("dependencies", []):
        source = ids.get(dependency.get("ref", ""))
        kind = "CONTAINS" if source == root_id else "DEPENDS_ON"
        for target in dependency.get("dependsOn", []):
            if source and target in ids:
                relationships.append(
                    {"spdxElementId": source, "relationshipType": kind, "relatedSpdxElement": ids[target]}
                )
    tools = metadata.get("tools", {}).get("components", [])
    creators = [f"Tool: {t.get('name', 'kubeplay')}-{t.get('version', 'unknown')}" for t in tools] or ["Tool: kubeplay"]
    created = str(metadata.get("timestamp", "1970-01-01T00:00:00Z"))
    serial = str(document.get("serialNumber", "urn:uuid:0")).removeprefix("urn:uuid:")
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": root.get("name", "kubeplay-bundle"),
        "documentNamespace": f"https://spdx.kubeplay.invalid/{root.get('name', 'bundle')}/{serial}",
        "creationInfo": {
            "created": re.sub(r"(\.\d+)?(\+00:00)?$", "", created).removesuffix("Z") + "Z",
            "creators": creators,
        },
        "packages": packages,
        "relationships": relationships,
    }
