"""The evaluator renders kubespray's variables the way Ansible 2.18 does.

Every case states the value a user would see; when ansible-core is importable the same case is also
rendered by Ansible's own Templar, and both must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError
from tests.conftest import require_module

from kubeplay.catalog.templating import TemplateEngine, TemplateFailure, VariableScope

ENGINE = TemplateEngine()


def render(value: Any, variables: dict[str, Any] | None = None) -> Any:
    return VariableScope(ENGINE, [variables or {}]).template(value)


def ansible_render(value: Any, variables: dict[str, Any]) -> Any:
    templar_module = require_module("ansible.template")
    loader_module = require_module("ansible.parsing.dataloader")
    templar = templar_module.Templar(loader=loader_module.DataLoader(), variables=variables)
    return templar.template(value)


VARIABLES: dict[str, Any] = {
    "version_text": "1.36",
    "as_list": "{{ [1, 2] }}",
    "as_dict": "{{ {'a': 1} }}",
    "as_bool": "{{ 'x' == 'x' }}",
    "as_number": "{{ 2 + 3 }}",
    "raw_int": 5,
    "raw_none": None,
    "chain_undefined": "{{ not_defined_anywhere }}",
    "chain_of_chain": "{{ chain_undefined }}-suffix",
    "checksums": {"amd64": {"3.6.1": "sha256:aa", "3.5.9": "sha256:bb", "3.4.0": "sha256:cc"}},
    "tool": "nerdctl",
    "nerdctl_pull": "nerdctl pull",
    "kube_version": "1.35.4",
    "kube_major": "{{ (kube_version | split('.'))[:-1] | join('.') }}",
    "kube_next": "{{ ((kube_version | split('.'))[1] | int) + 1 }}",
    "folded": "{%- if raw_int > 3 -%}\nbig\n{%- else -%}\nsmall\n{%- endif -%}",
}

CASES: list[tuple[str, Any, Any]] = [
    ("text that looks like a number stays text", "{{ version_text }}", "1.36"),
    ("a rendered list becomes a list", "{{ as_list }}", [1, 2]),
    ("a rendered dict becomes a dict", "{{ as_dict }}", {"a": 1}),
    ("a rendered comparison becomes a bool", "{{ as_bool }}", True),
    ("arithmetic renders to text", "{{ as_number }}", "5"),
    ("a raw number passes through {{ var }}", "{{ raw_int }}", 5),
    ("a raw null passes through {{ var }}", "{{ raw_none }}", None),
    ("None prints as an empty string", "x{{ raw_none }}y", "xy"),
    ("text with a list after a prefix stays text", " {{ as_list }}", " [1, 2]"),
    ("`string` keeps list-looking text a string", "{{ as_list | string }}", "[1, 2]"),
    ("undefined chain falls back to default", "{{ chain_undefined | default('fallback') }}", "fallback"),
    ("undefined chain of chain falls back too", "{{ chain_of_chain | d('fb') }}", "fb"),
    ("undefined chain is not defined", "{{ chain_undefined is defined }}", False),
    ("attribute of undefined is undefined", "{{ chain_undefined.x.y | default('deep') }}", "deep"),
    ("a missing dict key is undefined", "{{ checksums['arm64'] | default('none') }}", "none"),
    (
        "generators are unrolled for indexing",
        "{{ (checksums.amd64.keys() | select('version', '3.6', '<'))[0] }}",
        "3.5.9",
    ),
    ("dict2items keeps file order", "{{ (checksums['amd64'] | dict2items)[0].key }}", "3.6.1"),
    ("lookup('vars') resolves a computed name", "{{ lookup('vars', tool + '_pull') }}", "nerdctl pull"),
    ("lookup('vars') default for a missing name", "{{ lookup('vars', 'nope', default='d') }}", "d"),
    ("split/join as kube_major_version does", "{{ kube_major }}", "1.35"),
    ("int arithmetic then text, as kube_next does", "1.{{ kube_next }}", "1.36"),
    ("whitespace control with trim_blocks", "{{ folded }}", "big"),
    ("backslashes in string literals are kept", "{{ 'a\\\\b' }}", "a\\\\b"),
    # As written in kubespray's YAML ("\\1" in double quotes): one backslash reaches the template.
    ("regex_replace with a backreference", "{{ 'v1.2.3' | regex_replace('^v([0-9]+)\\.(.*)$', '\\1-\\2') }}", "1-2.3"),
    ("trailing newlines are preserved", "{{ version_text }}\n", "1.36\n"),
    ("lists render element by element", ["{{ version_text }}", "{{ raw_int }}"], ["1.36", 5]),
    ("dict values render, keys do not", {"{{ k }}": "{{ version_text }}"}, {"{{ k }}": "1.36"}),
    ("text without markers is returned as is", "plain {text}", "plain {text}"),
    ("undef() with default", "{{ undef('must set') | default('given') }}", "given"),
    ("range is unrolled", "{{ range(3) }}", [0, 1, 2]),
    ("json-like true is literal_eval'ed", "{{ '[true, null]' }}", [True, None]),
]


@pytest.mark.parametrize(("case", "template", "expected"), CASES, ids=[c[0] for c in CASES])
def test_renders_like_ansible(case: str, template: Any, expected: Any) -> None:
    got = render(template, VARIABLES)
    assert got == expected
    assert type(got) is type(expected)
    assert ansible_render(template, VARIABLES) == got, case


def test_variables_render_lazily_only_when_read() -> None:
    scope = VariableScope(ENGINE, [{"broken": "{{ 1 | no_such_filter }}", "fine": "ok", "uses_fine": "{{ fine }}!"}])
    assert scope.template("{{ uses_fine }}") == "ok!"
    assert "broken" not in scope._cache
    with pytest.raises(TemplateFailure, match="no_such_filter"):
        scope.template("{{ broken }}")


def test_undefined_variable_is_recorded_with_reason() -> None:
    scope = VariableScope(ENGINE, [VARIABLES])
    with pytest.raises(UndefinedError, match="not_defined_anywhere"):
        scope.template("{{ chain_undefined }}")
    assert "not_defined_anywhere" in scope.failed["chain_undefined"]


def test_recursive_variables_are_reported_not_looped() -> None:
    with pytest.raises(TemplateFailure, match="recursive loop"):
        render("{{ a }}", {"a": "{{ b }}", "b": "{{ a }}"})


def test_syntax_errors_are_reported_with_the_template() -> None:
    with pytest.raises(TemplateFailure, match="template error"):
        render("{{ a ", {"a": 1})


def test_precedence_defaults_user_facts_role_vars_extra() -> None:
    layers = [
        {"x": "default", "only_default": "d", "uses": "{{ x }}"},  # role defaults
        {"x": "user", "only_user": "u"},  # bundle.yaml kubespray_vars (inventory)
        {"x": "fact"},  # facts
        {"x": "role var"},  # role vars
        {},  # extra vars
    ]
    assert VariableScope(ENGINE, layers).template("{{ uses }}") == "role var"
    assert VariableScope(ENGINE, layers[:3]).template("{{ x }}") == "fact"
    assert VariableScope(ENGINE, layers[:2]).template("{{ x }}") == "user"
    assert VariableScope(ENGINE, [*layers[:4], {"x": "extra"}]).template("{{ uses }}") == "extra"
    assert VariableScope(ENGINE, layers).template("{{ only_default }}{{ only_user }}") == "du"


def test_role_vars_beat_user_vars_like_ansible() -> None:
    # kubespray's checksum tables are role *vars*: an inventory variable cannot replace them.
    defaults, user, role_vars = {"t": "default"}, {"t": "inventory"}, {"t": "role var"}
    assert VariableScope(ENGINE, [defaults, user, {}, role_vars]).template("{{ t }}") == "role var"


def test_env_lookup_is_hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_PROJECT_URL", "https://example.invalid")
    assert render("{{ lookup('env', 'CI_PROJECT_URL') }}") == ""


def test_unknown_lookup_is_a_failure_not_a_crash() -> None:
    with pytest.raises(TemplateFailure, match="lookup plugin 'pipe'"):
        render("{{ lookup('pipe', 'id') }}")
