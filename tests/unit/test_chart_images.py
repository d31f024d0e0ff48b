"""The images a chart uses, found from values.yaml conventions and the helm.sh/images annotation."""

from __future__ import annotations

from typing import Any

import pytest

from kubeplay.catalog.charts import ChartError, discover_images, excluded, read_chart
from kubeplay.lab.upstream.charts import build_chart

APP_VERSION_TEMPLATE = {"deployment.yaml": 'image: "{{ .Values.image.repository }}:{{ .Chart.AppVersion }}"\n'}


def found(values: dict[str, Any], **chart: Any) -> tuple[set[str], list[str]]:
    package = read_chart(build_chart("app", "1.0.0", values=values, **chart))
    images, unresolved = discover_images(package)
    return {i.ref for i in images}, [f"{u.where}: {u.why}" for u in unresolved]


@pytest.mark.parametrize(
    ("values", "chart", "expected"),
    [
        ({"image": "nginx:1.27"}, {}, {"nginx:1.27"}),
        ({"image": {"repository": "quay.io/org/app", "tag": "v2"}}, {}, {"quay.io/org/app:v2"}),
        ({"image": {"registry": "registry.k8s.io", "image": "ingress-nginx/controller", "tag": "v1.11.0",
                    "digest": "sha256:" + "a" * 64}}, {},
         {f"registry.k8s.io/ingress-nginx/controller:v1.11.0@sha256:{'a' * 64}"}),
        ({"image": {"registry": "docker.io", "repository": "bitnami/redis", "tag": 7.2}}, {}, {"docker.io/bitnami/redis:7.2"}),
        ({"global": {"imageRegistry": "mirror.example"}, "image": {"registry": "docker.io", "repository": "x/y",
                                                                    "tag": "1"}}, {}, {"mirror.example/x/y:1"}),
        ({"image": {"repository": "ghcr.io/org/app", "tag": ""}}, {"app_version": "3.1", "templates": APP_VERSION_TEMPLATE},
         {"ghcr.io/org/app:3.1"}),
        ({"controller": {"admissionWebhooks": {"patch": {"image": {"repository": "org/certgen", "tag": "v1"}}}},
          "sidecars": [{"name": "a", "image": "busybox:1.36"}], "initImage": "alpine:3.20"}, {},
         {"org/certgen:v1", "busybox:1.36", "alpine:3.20"}),
        ({"image": {"pullPolicy": "IfNotPresent"}}, {}, set()),
        ({}, {"annotations": {"helm.sh/images": "- name: agent\n  image: quay.io/org/agent:5\n"}}, {"quay.io/org/agent:5"}),
    ],
)  # fmt: skip
def test_images_found(values: dict[str, Any], chart: dict[str, Any], expected: set[str]) -> None:
    refs, unresolved = found(values, **chart)
    assert refs == expected
    assert unresolved == []


def test_what_cannot_resolve_is_listed_with_where_it_is() -> None:
    refs, unresolved = found(
        {
            "metrics": {"image": {"repository": "quay.io/org/metrics"}},
            "tpl": {"image": "{{ .Values.global.registry }}/x:1"},
            "ok": {"image": "nginx:1"},
        }
    )
    assert refs == {"nginx:1"}
    assert unresolved == [
        "values.yaml metrics.image: quay.io/org/metrics: no tag and no digest (and no .Chart.AppVersion default "
        "in the templates)",
        "values.yaml tpl.image: '{{ .Values.global.registry }}/x:1' is a template",
    ]


def test_vendored_subcharts_are_read_with_the_parents_global_registry() -> None:
    sub = build_chart(
        "redis", "0.5.0", values={"image": {"registry": "docker.io", "repository": "r/redis", "tag": "7"}}
    )
    package = read_chart(
        build_chart(
            "web",
            "1.0.0",
            values={"global": {"imageRegistry": "mirror.example"}},
            dependencies=[{"name": "redis", "version": "0.5.0", "repository": "https://charts.example.org"}],
            subcharts=[sub],
        )
    )
    assert package.missing_dependencies() == []
    images, _ = discover_images(package)
    assert [(i.ref, i.where) for i in images] == [("mirror.example/r/redis:7", "charts/redis values.yaml image")]


def test_exclude_by_reference_or_repository() -> None:
    assert excluded("busybox:1.36", ["docker.io/library/busybox"])
    assert excluded("busybox:1.36", ["busybox:1.36"])
    assert not excluded("busybox:1.36", ["busybox:1.35"])
    assert not excluded("quay.io/org/app:1", ["org/app"])


def test_not_a_chart() -> None:
    with pytest.raises(ChartError):
        read_chart(b"not gzip")
