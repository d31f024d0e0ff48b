"""Every Ansible filter and test kubespray's variable files use, checked against expected values and,
when ansible-core is importable, against Ansible's own implementation through a template."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import require_module

from kubeplay.catalog import ansible_filters as af
from kubeplay.catalog import ansible_tests
from kubeplay.catalog.templating import TemplateEngine, TemplateFailure, VariableScope

ENGINE = TemplateEngine()
VARIABLES: dict[str, Any] = {
    "d1": {"a": 1, "nested": {"x": 1, "l": [1]}},
    "d2": {"b": 2, "nested": {"y": 2, "l": [2]}},
    "versions": ["1.35.2", "1.34.4", "1.33.9"],
    "yes_text": "yes",
}

# (template, expected) — kubespray uses: version, dict2items, split, regex_replace, default/d, bool, combine,
# select/selectattr with the version test, lookup('vars'), first, join, length, lower, int, string, list.
CASES: list[tuple[str, Any]] = [
    ("{{ yes_text | bool }}", True),
    ("{{ 'off' | bool }}", False),
    ("{{ 'TRUE' | bool }}", True),
    ("{{ d1 | combine(d2) }}", {"a": 1, "nested": {"y": 2, "l": [2]}, "b": 2}),
    ("{{ d1 | combine(d2, recursive=True) }}", {"a": 1, "nested": {"x": 1, "l": [2], "y": 2}, "b": 2}),
    (
        "{{ d1 | combine(d2, recursive=True, list_merge='append') }}",
        {"a": 1, "nested": {"x": 1, "l": [1, 2], "y": 2}, "b": 2},
    ),
    ("{{ [d1, d2] | combine }}", {"a": 1, "nested": {"y": 2, "l": [2]}, "b": 2}),
    ("{{ d2 | dict2items }}", [{"key": "b", "value": 2}, {"key": "nested", "value": {"y": 2, "l": [2]}}]),
    ("{{ d2 | dict2items(key_name='k', value_name='v') | items2dict(key_name='k', value_name='v') }}", VARIABLES["d2"]),
    ("{{ '1.35.4' | split('.') }}", ["1", "35", "4"]),
    ("{{ 'a b  c' | split }}", ["a", "b", "c"]),
    ("{{ 'quay.io/coreos/etcd' | regex_replace('/etcd$', '') }}", "quay.io/coreos"),
    ("{{ 'ABC' | regex_replace('b', 'x', ignorecase=True) }}", "AxC"),
    (
        "{{ 'registry.k8s.io/coredns/coredns' | regex_replace('/coredns(?!/coredns).*$', '') }}",
        "registry.k8s.io/coredns",
    ),
    ("{{ 'key=value' | regex_search('=(.*)', '\\1') }}", ["value"]),
    ("{{ 'a1b22' | regex_findall('[0-9]+') }}", ["1", "22"]),
    ("{{ true | ternary('yes', 'no') }}", "yes"),
    ("{{ none_value | ternary('yes', 'no', 'none') }}", "none"),
    ("{{ [1, [2, [3]], None] | flatten }}", [1, 2, 3]),
    ("{{ [1, [2, [3]]] | flatten(levels=1) }}", [1, 2, [3]]),
    ("{{ [1, 2, 2, 3] | unique }}", [1, 2, 3]),
    ("{{ [1, 2] | union([2, 3]) }}", [1, 2, 3]),
    ("{{ [1, 2, 3] | intersect([2, 3, 4]) }}", [2, 3]),
    ("{{ [1, 2, 3] | difference([2]) }}", [1, 3]),
    ("{{ [1, 2] | symmetric_difference([2, 3]) }}", [1, 3]),
    ("{{ {'a': [1]} | to_json }}", '{"a": [1]}'),
    ("{{ 'user:pass' | b64encode }}", "dXNlcjpwYXNz"),
    ("{{ 'dXNlcjpwYXNz' | b64decode }}", "user:pass"),
    ("{{ '/a/b/c.tgz' | basename }}", "c.tgz"),
    ("{{ '/a/b/c.tgz' | dirname }}", "/a/b"),
    ("{{ 'a b' | quote }}", "'a b'"),
    ("{{ versions | select('version', '1.35', '<') | list }}", ["1.34.4", "1.33.9"]),
    ("{{ versions | select('version', '1.34.4', '>=') | first }}", "1.35.2"),
    ("{{ '1.35.10' is version('1.35.9', 'gt') }}", True),
    ("{{ '1.35.0' is version('1.35', '==') }}", False),
    ("{{ '2.0.0' is version('2.0.0', 'eq', strict=True) }}", True),
    ("{{ '1.9' is version_compare('1.10', '<') }}", True),
    ("{{ 'kube-ovn' is match('kube-') }}", True),
    ("{{ 'kube-ovn' is search('ovn') }}", True),
    ("{{ 'kube-ovn' is regex('^ovn') }}", False),
    ("{{ [1] is subset([1, 2]) }}", True),
    ("{{ [1, 2] is superset([2]) }}", True),
    ("{{ [1, 2] is contains(2) }}", True),
    ("{{ 'yes' is truthy(convert_bool=True) }}", True),
    ("{{ '' is falsy }}", True),
    ("{{ [{'type': 'RBAC'}, {'type': 'Node'}] | selectattr('type', 'equalto', 'RBAC') | list | length }}", "1"),
    ("{{ 'Linux' | lower }}", "linux"),
    ("{{ [3, 1] | sort | first }}", "1"),
    ("{{ d1 | ansible.builtin.dict2items | length }}", "2"),
]


def render(template: str) -> Any:
    return VariableScope(ENGINE, [{**VARIABLES, "none_value": None}]).template(template)


@pytest.mark.parametrize(("template", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_matches_expected_and_ansible(template: str, expected: Any) -> None:
    got = render(template)
    assert got == expected
    templar_module = require_module("ansible.template")
    loader_module = require_module("ansible.parsing.dataloader")
    templar = templar_module.Templar(loader=loader_module.DataLoader(), variables={**VARIABLES, "none_value": None})
    assert templar.template(template) == got


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ '10.233.0.0/18' | ansible.utils.ipaddr('net') | ansible.utils.ipaddr(3) }}", "10.233.0.3/18"),
        ("{{ '10.233.0.3/18' | ansible.utils.ipaddr('address') }}", "10.233.0.3"),
        ("{{ '10.233.0.3' | ansible.utils.ipaddr('net') }}", False),
        ("{{ 'not an ip' | ipaddr }}", False),
        ("{{ 'fd85::1' | ansible.utils.ipwrap }}", "[fd85::1]"),
        ("{{ '10.0.0.1' | ipwrap }}", "10.0.0.1"),
        ("{{ 'node1.example' | ipwrap }}", "node1.example"),
    ],
)
def test_ansible_utils_network_filters(template: str, expected: Any) -> None:
    # ansible.utils is a collection, not part of ansible-core: checked against its documented results.
    assert render(template) == expected


def test_mandatory_fails_with_the_variable_name() -> None:
    with pytest.raises(TemplateFailure, match="Mandatory variable 'nope' not defined"):
        render("{{ nope | mandatory }}")


def test_version_comparison_errors_are_reported() -> None:
    with pytest.raises(TemplateFailure, match="Version comparison failed"):
        render("{{ '1.a' is version('1.1', '<') }}")
    with pytest.raises(TemplateFailure, match="Invalid operator"):
        render("{{ '1.1' is version('1.1', '~') }}")


def test_loose_version_orders_numbers_numerically() -> None:
    assert ansible_tests.version_compare("1.10.0", "1.9.9", "gt")
    assert ansible_tests.version_compare("v3.6.10", "v3.6.9", ">")
    assert not ansible_tests.version_compare("3.5.9", "3.5.9", "ne")


def test_combine_rejects_non_dicts_and_unknown_keywords() -> None:
    with pytest.raises(af.FilterError):
        af.combine({"a": 1}, [1])
    with pytest.raises(af.FilterError):
        af.combine({"a": 1}, bogus=True)
