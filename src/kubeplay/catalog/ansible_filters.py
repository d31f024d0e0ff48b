"""The Ansible filters and tests kubespray's variable files use, re-implemented without Ansible.

Each follows ansible-core 2.18 (plugins/filter/core.py, plugins/filter/mathstuff.py, plugins/test/core.py,
module_utils/compat/version.py) or ansible.utils (ipaddr, ipwrap) closely enough for kubespray's files.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os.path
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from jinja2.runtime import Undefined


class FilterError(Exception):
    """A filter or test was used in a way Ansible would also reject."""


def is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple)


def to_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def to_bool(value: Any) -> Any:
    """Ansible's `bool`: None and bools unchanged; yes/on/1/true (any case) are True; all else False."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.lower()
    return value in ("yes", "on", "1", "true", 1)


def flatten(items: Any, levels: Any = None, skip_nulls: bool = True) -> list[Any]:
    out: list[Any] = []
    for element in items:
        if skip_nulls and element in (None, "None", "null"):
            continue
        if is_sequence(element):
            if levels is None:
                out.extend(flatten(element, skip_nulls=skip_nulls))
            elif int(levels) >= 1:
                out.extend(flatten(element, levels=int(levels) - 1, skip_nulls=skip_nulls))
            else:
                out.append(element)
        else:
            out.append(element)
    return out


def check_defined(item: Any) -> None:
    if isinstance(item, Mapping):
        for value in item.values():
            check_defined(value)
    elif isinstance(item, list):
        for value in item:
            check_defined(value)
    elif isinstance(item, Undefined):
        str(item)


def merge_lists(low: list[Any], high: list[Any], list_merge: str) -> list[Any]:
    if list_merge == "replace":
        return high
    if list_merge == "keep":
        return low
    if list_merge == "append":
        return low + high
    if list_merge == "prepend":
        return high + low
    if list_merge == "append_rp":
        return [x for x in low if x not in high] + high
    if list_merge == "prepend_rp":
        return high + [x for x in low if x not in high]
    raise FilterError(
        f"merge_hash: 'list_merge' accepts only replace, keep, append, prepend, append_rp, prepend_rp; got {list_merge!r}"
    )


def merge_hash(low: Mapping[str, Any], high: Mapping[str, Any], recursive: bool, list_merge: str) -> dict[str, Any]:
    result = dict(low)
    for key, value in high.items():
        current = result.get(key)
        if recursive and isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merge_hash(current, value, recursive, list_merge)
        elif isinstance(current, list) and isinstance(value, list):
            result[key] = merge_lists(current, value, list_merge)
        else:
            result[key] = value
    return result


def combine(*terms: Any, **kwargs: Any) -> Any:
    recursive = bool(kwargs.pop("recursive", False))
    list_merge = kwargs.pop("list_merge", "replace")
    if kwargs:
        raise FilterError("'recursive' and 'list_merge' are the only valid keyword arguments")
    dicts = flatten(terms, levels=1)
    check_defined(dicts)
    for item in dicts:
        if not isinstance(item, Mapping):
            raise FilterError(f"combine expects dictionaries, got {item!r}")
    if not dicts:
        return {}
    result: dict[str, Any] = dict(dicts[0])
    for item in dicts[1:]:
        result = merge_hash(result, item, recursive, list_merge)
    return result


def dict2items(value: Any, key_name: str = "key", value_name: str = "value") -> list[dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise FilterError(f"dict2items requires a dictionary, got {type(value).__name__} instead.")
    return [{key_name: key, value_name: item} for key, item in value.items()]


def items2dict(value: Any, key_name: str = "key", value_name: str = "value") -> dict[Any, Any]:
    if not is_sequence(value):
        raise FilterError(f"items2dict requires a list, got {type(value).__name__} instead.")
    try:
        return {item[key_name]: item[value_name] for item in value}
    except (KeyError, TypeError) as exc:
        raise FilterError(f"items2dict: every element needs {key_name!r} and {value_name!r}: {exc}") from None


def regex_replace(
    value: Any = "",
    pattern: str = "",
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
    mandatory_count: int = 0,
) -> str:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    output, subs = re.compile(pattern, flags).subn(replacement, to_text(value), count=count)
    if mandatory_count and mandatory_count != subs:
        raise FilterError(f"'{pattern}' should match {mandatory_count} times, but matches {subs} times")
    return output


def regex_search(value: Any, regex: str, *args: Any, **kwargs: Any) -> Any:
    flags = (re.I if kwargs.get("ignorecase") else 0) | (re.M if kwargs.get("multiline") else 0)
    match = re.search(regex, to_text(value), flags)
    if not match:
        return None
    if not args:
        return match.group()
    items = []
    for arg in args:
        if arg.startswith("\\g<"):
            items.append(match.group(arg[3:-1]))
        elif arg.startswith("\\"):
            items.append(match.group(int(arg[1:])))
        else:
            raise FilterError(f"Unknown argument {arg!r}")
    return items


def regex_findall(value: Any, regex: str, multiline: bool = False, ignorecase: bool = False) -> list[Any]:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.findall(regex, to_text(value), flags)


def split(value: Any, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    return to_text(value).split(sep, maxsplit)


def ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if bool(value) else false_val


def mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, Undefined):
        name = f"'{value._undefined_name}' " if value._undefined_name is not None else ""
        raise FilterError(msg or f"Mandatory variable {name}not defined.")
    return value


def to_json(value: Any, *args: Any, **kwargs: Any) -> str:
    return json.dumps(value, *args, **kwargs)


def to_nice_json(value: Any, indent: int = 4, sort_keys: bool = True, **kwargs: Any) -> str:
    return json.dumps(value, indent=indent, sort_keys=sort_keys, separators=(",", ": "), **kwargs)


def to_yaml(value: Any, **kwargs: Any) -> str:
    kwargs.setdefault("default_flow_style", None)
    return str(yaml.safe_dump(value, allow_unicode=True, **kwargs))


def from_yaml(value: Any) -> Any:
    return yaml.safe_load(value) if isinstance(value, str) else value


def from_json(value: Any) -> Any:
    return json.loads(value)


def unique(values: Any) -> list[Any]:
    out: list[Any] = []
    for item in values:
        if item not in out:
            out.append(item)
    return out


def intersect(a: Any, b: Any) -> list[Any]:
    return unique([x for x in a if x in b])


def difference(a: Any, b: Any) -> list[Any]:
    return unique([x for x in a if x not in b])


def union(a: Any, b: Any) -> list[Any]:
    return unique(list(a) + list(b))


def symmetric_difference(a: Any, b: Any) -> list[Any]:
    return unique([x for x in union(a, b) if x not in intersect(a, b)])


def b64encode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64encode(to_text(value).encode(encoding)).decode(encoding)


def b64decode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64decode(to_text(value).encode(encoding)).decode(encoding)


def ipwrap(value: Any, query: str = "") -> Any:
    """ansible.utils.ipwrap: put IPv6 addresses (with or without prefix) in brackets; leave the rest alone."""
    if is_sequence(value):
        return [ipwrap(item, query) for item in value]
    text = to_text(value)
    try:
        if ":" in text and ipaddress.ip_interface(text).version == 6:
            address, _, prefix = text.partition("/")
            return f"[{address}]" + (f"/{prefix}" if prefix else "")
    except ValueError:
        pass
    return value


def ipaddr(value: Any, query: Any = "") -> Any:
    """ansible.utils.ipaddr for the queries kubespray uses: '', 'address', 'net', 'prefix', 'netmask', n."""
    if is_sequence(value):
        results = [ipaddr(item, query) for item in value]
        return [r for r in results if r not in (False, None)]
    text = to_text(value)
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return False
    has_prefix = "/" in text
    network = iface.network
    if query in ("", None):
        return value
    if query == "address":
        return str(iface.ip)
    if query == "net":
        return str(network) if has_prefix and iface.ip == network.network_address else False
    if query == "prefix":
        return network.prefixlen
    if query == "netmask":
        return str(network.netmask)
    if query == "network":
        return str(network.network_address)
    if isinstance(query, int) or (isinstance(query, str) and query.lstrip("-").isdigit()):
        index = int(query)
        size = network.num_addresses
        if not -size <= index < size:
            return False
        address = network[index]
        return f"{address}/{network.prefixlen}"
    raise FilterError(f"ipaddr: unsupported query {query!r}")


FILTERS: dict[str, Callable[..., Any]] = {
    "bool": to_bool,
    "combine": combine,
    "dict2items": dict2items,
    "items2dict": items2dict,
    "flatten": flatten,
    "regex_replace": regex_replace,
    "regex_search": regex_search,
    "regex_findall": regex_findall,
    "regex_escape": re.escape,
    "split": split,
    "ternary": ternary,
    "mandatory": mandatory,
    "to_json": to_json,
    "to_nice_json": to_nice_json,
    "to_yaml": to_yaml,
    "to_nice_yaml": lambda v, indent=4, **kw: to_yaml(v, indent=indent, default_flow_style=False, **kw),
    "from_json": from_json,
    "from_yaml": from_yaml,
    "unique": unique,
    "intersect": intersect,
    "difference": difference,
    "union": union,
    "symmetric_difference": symmetric_difference,
    "basename": lambda p: os.path.basename(to_text(p)),
    "dirname": lambda p: os.path.dirname(to_text(p)),
    "b64encode": b64encode,
    "b64decode": b64decode,
    "quote": lambda v: shlex.quote(to_text(v)),
    "ipwrap": ipwrap,
    "ipaddr": ipaddr,
}
# Fully qualified names resolve to the same functions, as Ansible's plugin loader does.
FILTERS.update(
    {f"ansible.builtin.{name}": func for name, func in list(FILTERS.items()) if name not in ("ipaddr", "ipwrap")}
)
FILTERS.update({"ansible.utils.ipaddr": ipaddr, "ansible.utils.ipwrap": ipwrap})

# C.STRING_TYPE_FILTERS: their text is never turned back into lists or dicts.
STRING_FILTERS = frozenset({"string", "to_json", "to_nice_json", "to_yaml", "to_nice_yaml", "ppretty", "json"})
