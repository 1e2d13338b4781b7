"""Selectors: the one language for saying which parameters a mask selects or a label gets.

``masked``, ``freeze``, ``partition`` and the weight-decay ``mask=`` options all read
selectors through ``as_selector`` and ``resolve_selector``.

Selectors
---------
Which parameters a mask selects, or which label each parameter gets, is said with one of
three explicit kinds of value. Nothing is guessed from the value's type beyond this list:

1. **A tree** of Python bools (masks) or strings (labels), shaped like the params or like a
   *prefix* of them: a leaf covers the whole subtree opposite it, so
   ``{"encoder": True, "decoder": False}`` selects every leaf under ``encoder``. Nodes are
   matched by key, not by node type: a plain dict prefix works for a ``FrozenDict``,
   a Mapping-like state or a dataclass with those attribute names. ``None`` in the tree
   means "no label" and may only stand over leaves that are not optimized.
2. **A predicate** wrapped in ``where``: ``gx.where(lambda path, leaf: leaf.ndim == 1)``.
   It is called on each optimized leaf with ``path``, a tuple of keys (dict keys and
   attribute names as they are, sequence indices as ints, like Flax NNX filters), and
   returns a Python bool (masks) or a label string / ``None`` (labels). At ``update`` it
   sees the parameters when they are passed, else the updates (same shapes and dtypes), so
   it should depend on path, shape and dtype only, not on values. A bare callable is
   refused with a ``TypeError``: Equinox modules are callable pytrees, so a callable is
   never taken for a predicate (and a registered pytree is always read as a tree).
3. **Key-path patterns**: a string (masks only: ``masked(tx, "*/bias")``) or
   ``gx.match(...)``: ``gx.match("*/bias", "*/scale")`` selects leaves matching any of the
   patterns; ``gx.match({"encoder/**": "frozen", "*/bias": "no_decay"}, default="train")``
   labels them (``default`` labels the leaves no pattern matches).

Pattern syntax
--------------
A leaf's path is its keys joined by ``/``: dict keys and attribute names as text, sequence
indices as numbers (``layers/0/w``). A pattern is matched against the *whole* path,
component by component:

- ``*`` matches exactly one component;
- ``**`` matches any number of components, zero included (``encoder/**`` is everything
  under ``encoder``; ``**/bias`` is every ``bias`` at any depth; ``**`` is everything);
- within a component, fnmatch globbing: ``*`` any characters, ``?`` one character,
  ``[abc]`` a set (``layer_*/w``, ``layers/[01]/*``).

A pattern that matches no leaf raises a ``ValueError`` (it is almost always a typo). Keys
that themselves contain ``/`` cannot be spelled by a pattern; use ``where`` for them.

Rules and errors
----------------
Every optimized leaf must end up with exactly one label. ``partition`` raises a
``ValueError`` listing the paths that got no label or two different labels (two
``match`` patterns with different labels), and naming labels that have no transform or
transforms that got no parameter. A tree selector that is not a prefix of the params names
the first differing path. Paths in these messages use the pattern syntax above
(``encoder/w``), so they can be pasted into a pattern.

Selectors are static structure: trees are held in a hashable wrapper and predicates by
identity, so transforms holding them hash, compare by value and can be jit arguments or
Flax ``TrainState`` metadata.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import describe, is_none, is_param
from .._module import StaticTree
from .._typing import PyTree
from ..base import GradientTransformation
from ._paths import children, flatten, is_tree_leaf, key_value, list_paths, path_str

__all__ = ["where", "match", "as_selector", "resolve_selector", "Inverted"]


# --------------------------------------------------------------------------------------
# Selectors


class where:
    """A predicate selector: ``fn(path, leaf)`` returns a bool (mask) or a label (partition).

    ``path`` is a tuple of keys (dict keys and attribute names as they are, sequence
    indices as ints); ``leaf`` is an optimized leaf (an array; a Python-float parameter
    comes as a ``ShapeDtypeStruct`` of shape ()). Compared and hashed by the identity of
    ``fn``. Usable as a decorator.

    Args:
      fn: a callable (path, leaf) -> bool or label. No default.

    Example:
      >>> is_matrix = gx.where(lambda path, leaf: leaf.ndim == 2)
      >>> tx = gx.freeze(gx.sgd(learning_rate=1.0), is_matrix)
      >>> params = {"w": jnp.ones((1, 2)), "b": jnp.ones(2)}
      >>> updates, _ = tx.update(params, tx.init(params), params)
      >>> updates
      {'b': Array([-1., -1.], dtype=float32), 'w': Array([[0., 0.]], dtype=float32)}
    """

    __slots__ = ("fn",)
    fn: Callable[[tuple, Any], Any]

    def __init__(self, fn: Callable[[tuple, Any], Any] | where):
        if isinstance(fn, where):
            fn = fn.fn
        if not callable(fn):
            raise TypeError(f"where: expected a callable (path, leaf) -> bool | label, got {fn!r}")
        object.__setattr__(self, "fn", fn)

    def __setattr__(self, name, value):
        raise AttributeError("where is immutable")

    def __reduce__(self):  # pickle and copy rebuild through __init__, not setattr
        return where, (self.fn,)

    def __eq__(self, other):
        if not isinstance(other, where):
            return NotImplemented
        return self.fn == other.fn

    def __hash__(self):
        return hash(("where", self.fn))

    def __repr__(self):
        return f"where({getattr(self.fn, '__qualname__', repr(self.fn))})"


class _Pattern:
    """A compiled key-path pattern (see the module docstring for the syntax)."""

    __slots__ = ("text", "parts")

    def __init__(self, text: Any):
        if not isinstance(text, str):
            raise TypeError(f"match: patterns must be strings, got {text!r}")
        parts = tuple(text.split("/"))
        if not text or any(p == "" for p in parts):
            raise ValueError(
                f"match: bad pattern {text!r}: components are separated by single '/', with "
                "no leading, trailing or empty component"
            )
        self.text = text
        self.parts = parts

    def matches(self, path: tuple) -> bool:
        comps = tuple(str(k) for k in path)
        parts = self.parts
        memo: dict[tuple[int, int], bool] = {}

        def go(i: int, j: int) -> bool:
            if (i, j) in memo:
                return memo[i, j]
            if i == len(parts):
                res = j == len(comps)
            elif parts[i] == "**":
                res = go(i + 1, j) or (j < len(comps) and go(i, j + 1))
            else:
                res = (
                    j < len(comps) and fnmatch.fnmatchcase(comps[j], parts[i]) and go(i + 1, j + 1)
                )
            memo[i, j] = res
            return res

        return go(0, 0)


class match:
    """A key-path pattern selector (syntax in the module docstring).

    ``match("*/bias", "*/scale")``: a mask selecting the leaves any pattern matches.
    ``match({"encoder/**": "frozen", "*/bias": "no_decay"}, default="train")``: labels.
    Patterns given as plain strings carry the label ``True`` (selected); ``default`` is the
    label of leaves no pattern matches (for a mask: ``False``; for ``partition``: none, and
    an unlabelled parameter is an error). Several patterns may match a leaf only if they
    give it the same label.

    Args:
      *patterns: pattern strings (label True) and dicts {pattern: label}.
      default: the label of the leaves no pattern matches. Default None.

    Example:
      >>> labels = gx.match({"encoder/**": "frozen"}, default="train")
      >>> tx = gx.partition({"frozen": gx.set_to_zero(), "train": gx.sgd(1.0)}, labels)
      >>> params = {"encoder": {"w": jnp.array([1.0])}, "head": jnp.array([2.0])}
      >>> updates, _ = tx.update(params, tx.init(params), params)
      >>> updates
      {'encoder': {'w': Array([0.], dtype=float32)}, 'head': Array([-2.], dtype=float32)}
    """

    __slots__ = ("rules", "default")
    rules: tuple[tuple[_Pattern, Any], ...]
    default: Any

    def __init__(self, *patterns: str | Mapping[str, Any], default: Any = None):
        if not patterns:
            raise TypeError("match: give at least one pattern")
        rules: list[tuple[_Pattern, Any]] = []
        for p in patterns:
            if isinstance(p, Mapping):
                rules.extend((_Pattern(k), _check_label_value("match", v)) for k, v in p.items())
            else:
                rules.append((_Pattern(p), True))
        if default is not None:
            _check_label_value("match", default)
        object.__setattr__(self, "rules", tuple(rules))
        object.__setattr__(self, "default", default)

    def __setattr__(self, name, value):
        raise AttributeError("match is immutable")

    def __reduce__(self):  # pickle and copy rebuild through __init__, not setattr
        rules = tuple({p.text: label} for p, label in self.rules)
        return functools.partial(match, default=self.default), rules

    def _key(self):
        return (tuple((p.text, lab) for p, lab in self.rules), self.default)

    def __eq__(self, other):
        if not isinstance(other, match):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(("match", self._key()))

    def __repr__(self):
        if all(lab is True for _, lab in self.rules):
            args = [repr(p.text) for p, _ in self.rules]
        else:
            args = [repr({p.text: lab for p, lab in self.rules})]
        if self.default is not None:
            args.append(f"default={self.default!r}")
        return f"match({', '.join(args)})"


def _check_label_value(owner: str, value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if not isinstance(value, (bool, str)):
        raise TypeError(f"{owner}: labels must be strings (or bools for a mask), got {value!r}")
    return value


_WHAT = {"mask": "mask", "labels": "labels"}


def as_selector(owner: str, value: Any, kind: str) -> where | match | StaticTree:
    """Normalize a user's mask / labels argument to one of the three selector kinds."""
    what = _WHAT[kind]
    if isinstance(value, (where, match, StaticTree)):
        return value
    if value is None:
        raise TypeError(
            f"{owner}: {what} is None; give a tree of "
            f"{'bools' if kind == 'mask' else 'labels'}, gx.where(predicate) or a pattern"
        )
    if isinstance(value, str):
        if kind == "mask":
            return match(value)
        raise TypeError(
            f"{owner}: a bare string {value!r} is not a labels tree; label by pattern with "
            f"gx.match({{{value!r}: label, ...}}), or give a tree of labels"
        )
    if isinstance(value, GradientTransformation):
        raise TypeError(f"{owner}: {what} is a gradient transformation: {value!r}")
    if is_tree_leaf(value) and callable(value):
        raise TypeError(
            f"{owner}: got the callable {value!r} as {what}. Wrap a predicate explicitly: "
            "gx.where(lambda path, leaf: ...). (A bare callable is never taken for a "
            "predicate: Equinox modules are callable pytrees.)"
        )

    def check(path, leaf):
        if leaf is None:
            return None
        if isinstance(leaf, np.bool_):
            leaf = bool(leaf)
        ok = isinstance(leaf, bool) if kind == "mask" else isinstance(leaf, str)
        if not ok:
            want = "Python bools" if kind == "mask" else "label strings"
            hint = ""
            if kind == "mask" and isinstance(leaf, str):
                hint = "; to select by several patterns use gx.match('pattern', ...)"
            elif isinstance(leaf, (jax.Array, np.ndarray)):
                hint = (
                    "; a mask computed from arrays must be a predicate: "
                    "gx.where(lambda path, leaf: ...)"
                )
            elif callable(leaf):
                hint = "; wrap predicates in gx.where(...)"
            raise TypeError(
                f"{owner}: {what} leaves must be {want} (or None), got {leaf!r} at "
                f"{path_str(tuple(key_value(e) for e in path))}{hint}"
            )
        return leaf

    tree = jax.tree_util.tree_map_with_path(check, value, is_leaf=is_none)
    return StaticTree(tree)


# --------------------------------------------------------------------------------------
# Resolving a selector against a params tree


def _prefix_labels(owner: str, what: str, labels: PyTree, ref: PyTree) -> list[Any]:
    """Labels of ``ref``'s leaves (None as a leaf), from a tree that is a prefix of it."""
    out: list[Any] = []

    def mismatch(path, detail):
        hint = ""
        if isinstance(labels, Mapping) and any(
            isinstance(k, str) and any(c in k for c in "/*?[") for k in labels
        ):
            hint = "\n  (its keys look like patterns: select by pattern with gx.match({...}))"
        if callable(labels) and not jax.tree_util.tree_leaves(labels):
            hint += "\n  (it is callable: a predicate must be wrapped, gx.where(fn))"
        raise ValueError(
            f"{owner}: the {what} tree is not a prefix of the params tree; first differing "
            f"path: {path_str(path)} ({detail}){hint}"
        )

    def walk(lab, sub, path):
        if lab is None or is_tree_leaf(lab):
            n = len(jax.tree_util.tree_leaves(sub, is_leaf=is_none))
            out.extend([lab] * n)
            return
        if sub is None or is_tree_leaf(sub):
            mismatch(path, f"the {what} has a subtree there, params has {describe(sub)}")
        # Children are matched by key, not by position or node type: a dict prefix
        # (sorted keys) works for a dataclass (fields in declaration order) or a Mapping.
        lch, pch = dict(children(lab)), children(sub)
        pkeys = [k for k, _ in pch]
        extra = [k for k in lch if k not in pkeys]
        if extra:
            mismatch((*path, extra[0]), f"in the {what} but not in params")
        missing = [k for k in pkeys if k not in lch]
        if missing:
            mismatch((*path, missing[0]), f"in params but not in the {what}")
        for k, pc in pch:
            walk(lch[k], pc, (*path, k))

    walk(labels, ref, ())
    return out


class Inverted:
    """The complement of a mask selector (``freeze`` runs its inner on the unfrozen)."""

    __slots__ = ("selector",)

    def __init__(self, selector: Any):
        self.selector = selector


def resolve_selector(owner: str, selector: Any, ref: PyTree, kind: str) -> list[Any]:
    """One label per leaf of ``ref`` (``None`` counted as a leaf), checked.

    ``kind`` is "mask" (labels True / False) or "labels" (strings). Returns None for leaves
    that get no label: only leaves that are not optimized may be left so.
    """
    what = _WHAT[kind]
    if isinstance(selector, Inverted):
        labels = resolve_selector(owner, selector.selector, ref, kind)
        return [None if lab is None else not lab for lab in labels]
    pairs, _ = flatten(ref)
    paths = [p for p, _ in pairs]

    if isinstance(selector, StaticTree):
        labels = _prefix_labels(owner, what, selector.tree, ref)
    elif isinstance(selector, where):
        labels = []
        for path, leaf in pairs:
            if not is_param(leaf):
                labels.append(None)
                continue
            if isinstance(leaf, (float, complex)):  # a Python-number parameter
                leaf = jax.ShapeDtypeStruct((), jnp.result_type(leaf))
            lab = selector.fn(path, leaf)
            if isinstance(lab, np.bool_):
                lab = bool(lab)
            ok = isinstance(lab, bool) if kind == "mask" else (lab is None or isinstance(lab, str))
            if not ok:
                want = "a Python bool" if kind == "mask" else "a label string or None"
                raise TypeError(
                    f"{owner}: the predicate {selector!r} must return {want}, got {lab!r} at "
                    f"{path_str(path)}; it must depend on path, shape and dtype only (not on "
                    "array values)"
                )
            labels.append(lab)
    elif isinstance(selector, match):
        labels = _match_labels(owner, selector, paths, kind)
    else:  # pragma: no cover - as_selector only builds the three kinds
        raise TypeError(f"{owner}: unknown selector {selector!r}")

    unlabelled = [
        path_str(p)
        for p, (_, leaf), lab in zip(paths, pairs, labels)
        if lab is None and is_param(leaf)
    ]
    if unlabelled:
        if isinstance(selector, match):
            why = "no pattern matches them and the gx.match has no default"
        elif isinstance(selector, where):
            why = "the predicate returned None for them"
        else:
            why = f"the {what} tree has None over them"
        raise ValueError(
            f"{owner}: {len(unlabelled)} parameter(s) have no label ({why}): "
            f"{list_paths(unlabelled)}. Every parameter needs exactly one label."
        )
    return labels


def _match_labels(owner: str, selector: match, paths: list[tuple], kind: str) -> list[Any]:
    if kind == "labels":
        for p, lab in selector.rules:
            if not isinstance(lab, str):
                raise TypeError(
                    f"{owner}: pattern {p.text!r} has no label; label patterns with "
                    f"gx.match({{{p.text!r}: 'label', ...}})"
                )
        default = selector.default
    else:
        for p, lab in selector.rules:
            if not isinstance(lab, bool):
                raise TypeError(
                    f"{owner}: pattern {p.text!r} has the label {lab!r}, but a mask pattern "
                    "selects (True) or not (False); label groups with gx.partition"
                )
        default = False if selector.default is None else selector.default
    hits = [[(p, lab) for p, lab in selector.rules if p.matches(path)] for path in paths]
    for p, _ in selector.rules:
        if not any(any(q is p for q, _ in h) for h in hits):
            available = [path_str(x) for x in paths]
            suggestion = ""
            if any(_Pattern(p.text + "/**").matches(x) for x in paths):
                suggestion = f" (it names a subtree: did you mean {p.text + '/**'!r}?)"
            raise ValueError(
                f"{owner}: pattern {p.text!r} matches no path in the params{suggestion}. "
                f"Available paths ({len(available)}): {list_paths(available)}"
            )
    labels: list[Any] = []
    conflicts: list[str] = []
    for path, h in zip(paths, hits):
        found = {lab for _, lab in h}
        if len(found) > 1:
            detail = ", ".join(f"{p.text!r} -> {lab!r}" for p, lab in h)
            conflicts.append(f"{path_str(path)} ({detail})")
        labels.append(found.pop() if len(found) == 1 else default)
    if conflicts:
        raise ValueError(
            f"{owner}: {len(conflicts)} path(s) matched by patterns with different labels: "
            f"{list_paths(conflicts)}. Every parameter needs exactly one label."
        )
    return labels
