"""Ansible-compatible templating with plain Jinja2: lazy variables and Ansible's typing of rendered text.

This mirrors ansible-core 2.18 (`ansible/template/__init__.py`, `native_helpers.py`, `vars.py`) with
`jinja2_native = False`, the default kubespray runs with:

- a variable is rendered only when a template reads it; a variable whose template hits an undefined name
  becomes an Undefined value (so `x | default(...)` and `x is defined` work), as `AnsibleJ2Vars` does;
- results are typed like `ansible_eval_concat`: text that looks like a list, dict or bool is
  `literal_eval`ed; everything else stays text ("1.36" stays a string, `{{ 5 }}` gives "5");
- `{{ var }}` whose raw value is a bool or number returns it unchanged; a raw `None` stays None;
- backslashes inside `{{ }}` string literals are doubled first (`_escape_backslashes`);
- filter results that are generators are unrolled to lists; `None` prints as an empty string.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from itertools import chain, islice
from typing import Any, ClassVar

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.nativetypes import NativeEnvironment
from jinja2.runtime import Context, Undefined

from kubeplay.catalog import ansible_filters, ansible_tests

SINGLE_VAR = re.compile(r"^\{\{\s*(\w*)\s*\}\}$")
TEMPLATE_MARKERS = ("{{", "{%", "{#")


class TemplateFailure(Exception):
    """A template failed for a reason other than an undefined name (syntax, a filter error, recursion)."""


class NativeText(str):
    """Text from a string-typed filter (`string`, `to_json`, ...): never `literal_eval`ed (Ansible's NativeJinjaText)."""


class AnsibleUndefined(StrictUndefined):
    """Ansible's Undefined: attribute and item access return the same Undefined, so the first failure is kept."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self

    def __contains__(self, item: Any) -> Any:
        return self

    def __repr__(self) -> str:
        return f"AnsibleUndefined(hint={self._undefined_hint!r}, name={self._undefined_name!r})"


def is_rolled(value: Any) -> bool:
    return isinstance(value, Iterator | MappingView | range)


def unroll(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so a generator result becomes a list (Ansible's `_unroll_iterator`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        return list(result) if is_rolled(result) else result

    return wrapper


def as_native_text(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return NativeText(func(*args, **kwargs))

    return wrapper


def fail_on_undefined(data: Any) -> Any:
    """Raise the UndefinedError of the first Undefined nested anywhere in `data`; return `data`."""
    if isinstance(data, Mapping):
        for value in data.values():
            fail_on_undefined(value)
    elif isinstance(data, list | tuple):
        for item in data:
            fail_on_undefined(item)
    elif isinstance(data, StrictUndefined):
        str(data)
    return data


def finalize(thing: Any) -> Any:
    """Jinja finalize as Ansible's: unroll generators, raise on nested Undefined, print None as ''."""
    result = thing if fail_on_undefined(thing) is not None else ""
    return list(result) if is_rolled(result) else result


class JsonNames(ast.NodeTransformer):
    """true/false/null inside rendered text become Python values, as in Ansible's Json2Python."""

    names: ClassVar[dict[str, Any]] = {"true": True, "false": False, "null": None}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in self.names:
            return node
        return ast.Constant(value=self.names[node.id])


def to_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value if isinstance(value, str) else str(value)


def eval_concat(nodes: Iterable[Any]) -> Any:
    """Join rendered nodes and type the result like `ansible_eval_concat` (non-native Ansible)."""
    stream = iter(nodes)
    head = list(islice(stream, 2))
    if not head:
        return ""
    if len(head) == 1:
        out = head[0]
        if isinstance(out, NativeText):
            return str(out)
        out = to_text(out)
    else:
        out = "".join(to_text(v) for v in chain(head, stream))
    if out.startswith(("{", "[")) or out in ("True", "False"):
        try:
            tree = ast.fix_missing_locations(JsonNames().visit(ast.parse(out, mode="eval")))
            return ast.literal_eval(tree)
        except (TypeError, ValueError, SyntaxError, MemoryError):
            pass
    return out


class LazyContext(Context):
    def get_all(self) -> Any:
        # dict(parent) would render every variable; a chained view keeps lookups lazy.
        if not self.vars:
            return self.parent
        return ChainMap(self.vars, self.parent)


class AnsibleLikeEnvironment(NativeEnvironment):
    """Jinja2 environment configured like Ansible's AnsibleEnvironment (non-native mode)."""

    concat = staticmethod(eval_concat)  # type: ignore[assignment]
    context_class = LazyContext

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, undefined=AnsibleUndefined, finalize=finalize)
        for name, func in list(self.filters.items()):
            self.filters[name] = unroll(func)
        for name, func in ansible_filters.FILTERS.items():
            wrapped = as_native_text(func) if name in ansible_filters.STRING_FILTERS else unroll(func)
            self.filters[name] = wrapped
        for name in ansible_filters.STRING_FILTERS:
            if name in self.filters and name not in ansible_filters.FILTERS:
                self.filters[name] = as_native_text(self.filters[name])
        self.tests.update(ansible_tests.TESTS)


def escape_backslashes(data: str, env: AnsibleLikeEnvironment) -> str:
    """Double backslashes in string literals inside `{{ }}`, as Ansible does before parsing."""
    if "\\" not in data or "{{" not in data:
        return data
    parts = []
    in_var = False
    for _lineno, kind, text in env.lex(env.preprocess(data)):
        if kind == "variable_begin":
            in_var = True
        elif kind == "variable_end":
            in_var = False
        parts.append(text.replace("\\", "\\\\") if in_var and kind == "string" else text)
    return "".join(parts)


def trailing_newlines(text: str) -> int:
    return len(text) - len(text.rstrip("\n"))


def is_possibly_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in TEMPLATE_MARKERS)


class TemplateEngine:
    """One Jinja environment and a cache of compiled templates shared by every VariableScope."""

    def __init__(self) -> None:
        self.env = AnsibleLikeEnvironment()
        self._compiled: dict[str, Any] = {}
        self.names_read: dict[str, frozenset[str]] = {}

    def compile(self, source: str) -> Any:
        template = self._compiled.get(source)
        if template is None:
            escaped = escape_backslashes(source, self.env)
            try:
                template = self.env.from_string(escaped)
            except TemplateError as exc:
                raise TemplateFailure(f"template error: {exc}; template: {source.strip()}") from None
            self._compiled[source] = template
        return template


class SharedValues:
    """Rendered values reusable by every scope of one plan: variables that read none of the `volatile`
    names (facts, the per-configuration settings) render the same everywhere. `reads(name)` returns every
    variable `name` reads, transitively; names read through lookup('vars', ...) are unknowable, so a
    variable that reaches a lookup is never shared."""

    def __init__(self, reads: Callable[[str], frozenset[str]], raw: Mapping[str, Any], volatile: Iterable[str]) -> None:
        self.reads = reads
        self.raw = raw
        self.volatile = frozenset(volatile)
        self.values: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self._shareable: dict[str, bool] = {}

    def can_share(self, name: str) -> bool:
        known = self._shareable.get(name)
        if known is None:
            reads = self.reads(name)
            known = not (reads & self.volatile) and not any(self._dynamic(n) for n in reads | {name})
            self._shareable[name] = known
        return known

    def _dynamic(self, name: str) -> bool:
        value = self.raw.get(name)
        return isinstance(value, str) and ("lookup(" in value or "query(" in value or "q(" in value)


class VariableScope(Mapping[str, Any]):
    """Layered variables (lowest precedence first), rendered lazily on read, each at most once.

    A variable whose template reads an undefined name becomes an AnsibleUndefined carrying a hint;
    `failed` maps such variable names to the reason.
    """

    def __init__(
        self, engine: TemplateEngine, layers: Iterable[Mapping[str, Any]], shared: SharedValues | None = None
    ) -> None:
        self.engine = engine
        self.raw: dict[str, Any] = {}
        for layer in layers:
            self.raw.update(layer)
        self.failed: dict[str, str] = {}
        self.shared = shared
        self._cache: dict[str, Any] = {}
        self._active: set[str] = set()
        self._globals: dict[str, Any] = dict(engine.env.globals)
        self._globals.update(lookup=self.lookup, query=self.query, q=self.query, undef=make_undefined)

    def __contains__(self, name: object) -> bool:
        return name in self.raw or name in self._globals

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name not in self.raw:
            return self._globals[name]
        shared = self.shared if self.shared is not None and self.shared.can_share(name) else None
        if shared is not None and name in shared.values:
            value = self._cache[name] = shared.values[name]
            if name in shared.failed:
                self.failed[name] = shared.failed[name]
            return value
        if name in self._active:
            raise TemplateFailure(f"recursive loop detected in template of variable {name!r}")
        self._active.add(name)
        try:
            value = self.template(self.raw[name])
        except UndefinedError as exc:
            self.failed[name] = str(exc)
            value = AnsibleUndefined(hint=f"{name}: {exc}", name=name)
        finally:
            self._active.discard(name)
        self._cache[name] = value
        if shared is not None:
            shared.values[name] = value
            if name in self.failed:
                shared.failed[name] = self.failed[name]
        return value

    def template(self, value: Any) -> Any:
        """Render `value` (text, list or dict, recursively); raise UndefinedError or TemplateFailure."""
        if isinstance(value, str):
            if not is_possibly_template(value):
                return value
            only = SINGLE_VAR.match(value)
            if only and only.group(1) in self.raw:
                raw = self.raw[only.group(1)]
                if raw is None or isinstance(raw, bool | int | float):
                    return raw
            return self.render_text(value)
        if isinstance(value, list | tuple):
            return [self.template(item) for item in value]
        if isinstance(value, Mapping):
            return {key: self.template(item) for key, item in value.items()}
        return value

    def render_text(self, source: str) -> Any:
        template = self.engine.compile(source)
        context = template.new_context(self, shared=True)
        try:
            result = self.engine.env.concat(template.root_render_func(context))
        except (UndefinedError, TemplateFailure):
            raise
        except RecursionError:
            raise TemplateFailure(f"recursive loop detected in template: {source.strip()}") from None
        except TypeError as exc:
            if "Undefined" in str(exc):
                raise UndefinedError(f"unable to look up a name in template: {exc}") from None
            raise TemplateFailure(f"{exc} (template: {source.strip()})") from None
        except Exception as exc:  # noqa: BLE001 - any filter error becomes a reported problem, never a crash
            raise TemplateFailure(f"{type(exc).__name__}: {exc} (template: {source.strip()})") from None
        if isinstance(result, str):
            missing_newlines = trailing_newlines(source) - trailing_newlines(result)
            if missing_newlines > 0:
                result += "\n" * missing_newlines
        return result

    def lookup(self, plugin: str, *terms: Any, **kwargs: Any) -> Any:
        """`lookup('vars', name, default=...)` and `lookup('env', name)`, joined like Ansible's `_lookup`."""
        wantlist = bool(kwargs.pop("wantlist", False))
        results = self._run_lookup(plugin, terms, kwargs)
        if wantlist or not results:
            return results
        try:
            return ",".join(results)
        except TypeError:
            return results[0] if len(results) == 1 else results

    def query(self, plugin: str, *terms: Any, **kwargs: Any) -> Any:
        kwargs["wantlist"] = True
        return self.lookup(plugin, *terms, **kwargs)

    def _run_lookup(self, plugin: str, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        name = plugin.removeprefix("ansible.builtin.")
        if name == "vars":
            default = kwargs.get("default")
            results = []
            for term in terms:
                if not isinstance(term, str):
                    raise TemplateFailure(f'Invalid setting identifier, "{term}" is not a string')
                value = (
                    self[term] if term in self.raw else AnsibleUndefined(f"No variable found with this name: {term}")
                )
                if isinstance(value, Undefined):
                    if default is None:
                        str(value)
                    value = default
                results.append(value)
            return results
        if name == "env":
            # Hermetic: the plan must not depend on the environment of whoever runs kubeplay.
            return ["" if kwargs.get("default") is None else kwargs["default"] for _ in terms]
        raise TemplateFailure(f"lookup plugin {plugin!r} is not supported by kubeplay's evaluator")


def make_undefined(hint: Any = None) -> AnsibleUndefined:
    """Ansible's `undef()` global."""
    if hint is None or isinstance(hint, Undefined) or hint == "":
        hint = "Mandatory variable has not been overridden"
    return AnsibleUndefined(hint=str(hint))


def referenced_names(engine: TemplateEngine, value: Any) -> set[str]:
    """Every undeclared name a raw value's templates read (static; used for dependency analysis)."""
    names: set[str] = set()
    if isinstance(value, str):
        if is_possibly_template(value):
            cached = engine.names_read.get(value)
            if cached is None:
                try:
                    parsed = engine.env.parse(escape_backslashes(value, engine.env))
                    cached = frozenset(meta.find_undeclared_variables(parsed))
                except TemplateError:
                    cached = frozenset()
                engine.names_read[value] = cached
            names |= cached
    elif isinstance(value, list | tuple):
        for item in value:
            names |= referenced_names(engine, item)
    elif isinstance(value, Mapping):
        for item in value.values():
            names |= referenced_names(engine, item)
    return names
