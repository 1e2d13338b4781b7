"""Reading and changing hyperparameters of a built transform.

Transforms are pytrees, so a hyperparameter has a key path, e.g.
``.scale_by_adam.b1`` or ``.scale_by_learning_rate.learning_rate`` in ``gx.adam(1e-3)``.

- ``replace(tx, learning_rate=3e-4)`` changes every field of that name, anywhere in the
  transform (chains and wrappers included); ``replace(tx, {".scale_by_adam.b1": 0.95})``
  changes one field by path. The result is validated like a new construction and has the
  same structure, so a jitted step taking ``tx`` as an argument runs it without retracing
  (unless a number is replaced by a schedule, which is a new structure).
- ``hyperparams(tx, state)`` returns every numeric hyperparameter by path, with
  schedules evaluated at the step count held in ``state``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import jax.numpy as jnp

from ._leafwise import scalar_dtype
from ._module import Module
from ._typing import OptState
from .base import ChainState, GradientTransformation, chain

__all__ = ["replace", "hyperparams"]

_T = TypeVar("_T")  # replace gives back what it was given: a transform of the same type


def _children(obj: Any, *, leaves_only: bool = False) -> list[tuple[str, Any]]:
    """(path component, value) of a transform's fields, chains by member name;
    ``leaves_only`` leaves out static fields (structure such as a seed, not a value)."""
    if isinstance(obj, chain):
        return list(zip(obj.names, obj.transforms))
    return [
        (f.name, getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if not (leaves_only and f.metadata.get("static"))
    ]


def _rebuild(obj: Any, path: str, change: Callable[[Any, str, Any], Any], seen: set) -> Any:
    if isinstance(obj, (list, tuple)):
        items = [_rebuild_child(x, None, f"{path}[{i}]", change, seen) for i, x in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        entries = {
            k: _rebuild_child(v, None, f"{path}[{k!r}]", change, seen) for k, v in obj.items()
        }
        return entries if any(entries[k] is not obj[k] for k in obj) else obj
    if not isinstance(obj, Module):
        return obj
    updates = {}
    for name, value in _children(obj):
        new = _rebuild_child(value, name, f"{path}.{name}", change, seen)
        if new is not value:
            updates[name] = new
    if not updates:
        return obj
    if isinstance(obj, chain):
        members = [updates.get(n, t) for n, t in zip(obj.names, obj.transforms)]
        return chain(**dict(zip(obj.names, members)), name=obj.name)
    # dataclasses.replace re-runs __init__, hence the hyperparameter validation.
    return dataclasses.replace(obj, **updates)


def _rebuild_child(value: Any, name: Any, path: str, change: Callable, seen: set) -> Any:
    """``value`` replaced (if ``change`` names it by field name or path) or rebuilt; a
    sequence element or dict entry has no field name (``name`` None): path only."""
    new = change(name, path, value)
    if new is _KEEP:
        return _rebuild(value, path, change, seen)
    seen.add(path)
    return new


_KEEP = object()


def _paths(tx: Any) -> list[str]:
    out: list[str] = []

    def walk(obj, path):
        if isinstance(obj, Module):
            for name, value in _children(obj):
                out.append(f"{path}.{name}")
                walk(value, f"{path}.{name}")
        elif isinstance(obj, (list, tuple)):
            for i, x in enumerate(obj):
                walk(x, f"{path}[{i}]")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}[{k!r}]")

    walk(tx, "")
    return out


def replace(tx: _T, by_path: dict[str, Any] | None = None, /, **by_name: Any) -> _T:
    """A copy of ``tx`` with hyperparameters changed, by field name or by key path.

    ``replace(gx.adamw(1e-3), learning_rate=3e-4, weight_decay=0.05)`` changes every field
    with those names; ``replace(tx, {".scale_by_adam.b2": 0.99})`` one field by path (the
    paths ``hyperparams`` prints, tuple elements included: ``"....values[1]"``). Raises
    ``ValueError`` naming the available fields when a name or path matches nothing.

    Args:
      tx: the transform (chains and wrappers included).
      by_path: {key path: new value} (positional only). Default None.
      **by_name: field name = new value, for every field of that name.

    Example:
      >>> tx = gx.replace(gx.adamw(1e-3), learning_rate=0.5, weight_decay=0.0)
      >>> tx.scale_by_learning_rate.learning_rate, tx.add_decayed_weights.weight_decay
      (0.5, 0.0)
      >>> gx.replace(tx, {".scale_by_adam.b2": 0.99}).scale_by_adam.b2
      0.99
    """
    by_path = dict(by_path or {})
    seen: set[str] = set()

    def change(name, path, value):
        if path in by_path:
            return by_path[path]
        if name is not None and name in by_name:
            return by_name[name]
        return _KEEP

    new = _rebuild(tx, "", change, seen)
    matched_names = {p.rsplit(".", 1)[-1] for p in seen}
    missing = [p for p in by_path if p not in seen]
    missing += [n for n in by_name if n not in matched_names]
    if missing:
        available = sorted(_paths(tx))
        raise ValueError(
            f"replace: {missing} matched no field of {type(tx).__name__}; fields by path: "
            f"{available}"
        )
    return new


def _inner_state(state: Any, name: str) -> Any:
    """The state of the inner transform held in field ``name``: a chain's member state by
    name; for a wrapper, its ``inner_state`` field (every wrapper names it so)."""
    if isinstance(state, ChainState):
        return state[name] if name in state.names else None
    return getattr(state, "inner_state", None)


def hyperparams(tx: GradientTransformation, state: OptState | None = None) -> dict[str, Any]:
    """Every numeric hyperparameter of ``tx`` by key path, as scalars.

    A schedule is evaluated at the step count of its transform's state (``state.count``)
    when ``state`` is given; otherwise its own parameters are listed under its path.
    Usable inside ``jit``.

    Args:
      tx: the transform.
      state: its state, to evaluate schedules at the current step. Default None.

    Example:
      >>> tx = gx.sgd(learning_rate=gx.linear_schedule(1.0, 0.5, transition_steps=2))
      >>> state = tx.init(jnp.zeros(1))
      >>> _, state = tx.update(jnp.ones(1), state)
      >>> gx.hyperparams(tx, state)
      {'.scale_by_learning_rate.learning_rate': Array(0.75, dtype=float32)}
      >>> sorted(gx.hyperparams(tx))
      ['.scale_by_learning_rate.learning_rate.end_value', ...]
    """
    out: dict[str, Any] = {}

    def walk(obj, path, st):
        count = getattr(st, "count", None) if st is not None else None
        for name, value in _children(obj, leaves_only=True):
            sub = f"{path}.{name}"
            if isinstance(value, GradientTransformation):
                walk(value, sub, _inner_state(st, name))
            elif callable(value) and count is not None:
                v = jnp.asarray(value(count))
                if v.dtype != jnp.bool_:  # a predicate (when to act) is not a value
                    out[sub] = v.astype(scalar_dtype())
            elif isinstance(value, Module):
                walk(value, sub, None)
            elif isinstance(value, (list, tuple, dict)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for k, v in items:
                    key = f"{sub}[{k!r}]"
                    if isinstance(v, GradientTransformation):
                        inner = _inner_state(st, name)
                        walk(v, key, inner[k] if inner is not None else None)
                    elif isinstance(v, Module):
                        walk(v, key, None)
                    elif _is_number(v):
                        out[key] = jnp.asarray(v, scalar_dtype())
            elif _is_number(value):
                out[sub] = jnp.asarray(value, scalar_dtype())

    walk(tx, "", state)
    return out


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return True
    return (
        hasattr(value, "dtype")
        and getattr(value, "ndim", 1) == 0
        and jnp.issubdtype(value.dtype, jnp.number)
    )
