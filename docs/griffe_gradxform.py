"""Griffe extension for the API reference (``mkdocs.yml`` loads it; not part of the site).

Griffe reads the package's source statically. Two conventions of the package need help:

- Transforms and schedules subclass ``gradxform._module.Module``, which makes every
  subclass a dataclass in ``__init_subclass__`` (``typing.dataclass_transform``); Griffe
  only recognises ``@dataclass``. Without an ``__init__`` built from the fields, their
  signatures would be empty and each ``Args:`` entry would warn.
- Examples sit under ``Example:``; Griffe's Google parser knows ``Examples:`` only, and
  would render the ``>>>`` lines as prose.
- Argument descriptions often start with a bound (``eps: > 0, ...``): a ``>`` at the start
  of a description or line would be a Markdown blockquote, so it is escaped.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MODULE = "gradxform._module.Module"
_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)
# "  name: > 0", "  name (type): >= 0", or a line starting with ">" (not a >>> prompt).
_BOUND = re.compile(r"^([ \t]+[\w*]+(?: \([^)\n]*\))?: |[ \t]*)>(?!>>)", re.MULTILINE)


class GradxformDocs(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _BOUND.sub(r"\1\\>", value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "gradxform":
            for cls in _classes(pkg, set()):
                _add_init(cls)


def _classes(obj: griffe.Module | griffe.Class, seen: set[str]):
    if obj.path in seen:
        return
    seen.add(obj.path)
    if isinstance(obj, griffe.Class):
        yield obj
    for member in obj.members.values():
        if not member.is_alias and (member.is_module or member.is_class):
            yield from _classes(member, seen)  # type: ignore[arg-type]


def _module_lineage(cls: griffe.Class) -> list[griffe.Class] | None:
    """``cls`` and its bases, base first, that are Module subclasses; None if not one."""
    try:
        mro = [cls, *cls.mro()]
    except ValueError:  # a base Griffe cannot resolve
        return None
    if cls.path == _MODULE or _MODULE not in [c.path for c in mro]:
        return None
    return [c for c in reversed(mro) if c.path != _MODULE and _MODULE in [b.path for b in c.mro()]]


def _default(attr: griffe.Attribute) -> Any:
    value = attr.value
    if isinstance(value, griffe.ExprCall) and str(value.function).split(".")[-1] in (
        "field",
        "static_field",
    ):
        for arg in value.arguments:
            if isinstance(arg, griffe.ExprKeyword) and arg.name == "default":
                return arg.value
            if isinstance(arg, griffe.ExprKeyword) and arg.name == "default_factory":
                return griffe.ExprCall(function=arg.value, arguments=[])
        return None
    return value


def _add_init(cls: griffe.Class) -> None:
    lineage = _module_lineage(cls)
    if lineage is None or "__init__" in cls.members:
        return
    params: dict[str, griffe.Parameter] = {}
    for c in lineage:
        kw_only = False
        for member in c.members.values():
            if not isinstance(member, griffe.Attribute) or member.annotation is None:
                continue
            if "instance-attribute" not in member.labels:  # a ClassVar
                continue
            if str(member.annotation).split(".")[-1] == "KW_ONLY":
                kw_only = True
                continue
            kind = (
                griffe.ParameterKind.keyword_only
                if kw_only
                else griffe.ParameterKind.positional_or_keyword
            )
            params[member.name] = griffe.Parameter(
                member.name, annotation=member.annotation, kind=kind, default=_default(member)
            )
    ordered = sorted(params.values(), key=lambda p: p.kind is griffe.ParameterKind.keyword_only)
    self_ = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(self_, *ordered),
        returns="None",
    )
    cls.set_member("__init__", init)
    cls.labels.add("dataclass")
