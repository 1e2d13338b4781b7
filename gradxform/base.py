"""The transform protocol: frozen pytree dataclasses, ``chain``, ``apply_updates``.

A gradient transformation is a value with two pure methods::

    state = tx.init(params)
    updates, state = tx.update(updates, state, params=None, **extra)

Every transform (and every schedule) is a frozen dataclass registered as a pytree.
Numeric hyperparameters are pytree *leaves*, so a transform passed to a jitted function
as an argument can change its learning rate without a recompile; structural options
(flags, dtypes, names, plain Python callables) are *static* and live in the treedef.

Conventions shared by every transform in the package:

- ``None`` leaves and leaves that are not arrays (strings, Python ints, objects) are
  "not optimized": their state slot is ``None`` and their update passes through as is.
- Math runs in at least float32 whatever the parameter dtype; an update leaves a
  transform with the dtype it came in with. ``chain`` casts float16/bfloat16 updates to
  float32 once on entry, passes float32 between its members and rounds once on exit (a
  nested chain gets float32, so only the outermost rounds): no intermediate overflows
  or is rounded on its way.
- Trees that must match (updates vs params vs state slots) are checked, and a mismatch
  names the first differing key path.

This module and its private helpers (``_module``: the dataclass machinery, ``_checks``:
validation, ``_leafwise``: dtype and slot rules) import nothing from the rest of the
package; everything else builds on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from ._checks import (
    check_param_dtypes,
    check_params,
    check_transform,
    is_int_array,
    is_none,
    is_param,
)
from ._leafwise import cast, per_leaf, round_back, upcast_narrow, wider_dtype, zeros_like_updates
from ._module import Module, static_field
from ._typing import OptState, Params, Updates

__all__ = [
    "GradientTransformation",
    "EmptyState",
    "ChainState",
    "chain",
    "identity",
    "stateless",
    "set_to_zero",
    "apply_updates",
    "empty_state",
    "named_chain",
]


# The protocol


class EmptyState(NamedTuple):
    """State of a stateless transform."""


def empty_state(params: Params) -> EmptyState:
    """``init`` of a stateless transform: checks params like every other ``init`` (an
    integer leaf is refused with its path: its update would be dropped by
    ``apply_updates``), then holds nothing."""
    check_param_dtypes(params, "params")
    return EmptyState()


class GradientTransformation(Module):
    """A pure gradient transformation: ``init`` then repeated ``update``.

    ``update`` accepts extra keyword arguments (``value``, ``grad``, ``value_fn`` ...);
    transforms that do not need them ignore them, and ``chain`` forwards them to all.

    ``lands_on_params`` (class attribute, default False) marks transforms whose updates
    land parameters exactly on a target (projections, proximal steps): their output keeps
    the parameter's precision, and ``chain`` does not round it below that.
    """

    lands_on_params: ClassVar[bool] = False

    def init(self, params: Params) -> OptState:
        raise NotImplementedError

    def update(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra: Any
    ) -> tuple[Updates, OptState]:
        raise NotImplementedError


class identity(GradientTransformation):
    """Leaves updates unchanged: u <- u.

    Example:
      >>> tx = gx.identity()
      >>> updates, state = tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates
      Array([ 1., -2.], dtype=float32)
    """

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return updates, state


class stateless(GradientTransformation):
    """A transform from a pure function ``fn(updates, params) -> updates``.

    ``fn`` is static (part of the treedef): equal only when it is the same function.

    Args:
      fn: a pure function (updates, params) -> updates; params may be None. No default.

    Example:
      >>> halve = gx.stateless(lambda u, p: jax.tree.map(lambda x: x / 2, u))
      >>> updates, state = halve.update(jnp.array([1.0, -2.0]), halve.init(jnp.zeros(2)))
      >>> updates
      Array([ 0.5, -1. ], dtype=float32)
    """

    fn: Callable

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return self.fn(updates, params), state


class set_to_zero(GradientTransformation):
    """Replaces every update by zeros of the same shape and dtype: u <- 0.

    Typically used through ``partition`` to give a group of parameters no update.

    Example:
      >>> tx = gx.set_to_zero()
      >>> updates, state = tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates
      Array([0., 0.], dtype=float32)
    """

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return zeros_like_updates(updates), state


def _member_name(t: Any) -> str:
    """A chain member's default name: a named optimizer's name ("adamw", not "chain"), a
    transform's type; a foreign transform (Optax's: a NamedTuple of two closures) is named
    after the function that built it, from its update's ``__qualname__``
    (``scale_by_adam.<locals>.update_fn`` -> ``scale_by_adam``; a bound method
    ``MultiSteps.update`` -> ``MultiSteps``), else after its type."""
    if isinstance(t, chain):
        return getattr(t, "name", None) or type(t).__name__
    if isinstance(t, Module):
        return type(t).__name__
    update = getattr(t, "update", None)
    owner = getattr(update, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        return type(owner).__name__
    head, locals_, rest = getattr(update, "__qualname__", "").partition(".<locals>.")
    if locals_ and head.isidentifier() and not rest.endswith("<lambda>"):
        return head
    return type(t).__name__


def _is_static_member(t: Any) -> bool:
    """A member that is not a Module and holds no number or array (an Optax transform:
    two functions; ``optax.MultiSteps``: an object) is structure, part of the treedef, so a
    chain holding it can be a jit argument (a function is not a valid jit argument)."""
    if isinstance(t, Module):
        return False
    return not any(
        isinstance(x, int | float | complex) or (hasattr(x, "shape") and hasattr(x, "dtype"))
        for x in jax.tree_util.tree_leaves(t)
    )


def _unique_names(transforms: tuple) -> tuple[str, ...]:
    base = [_member_name(t) for t in transforms]
    return tuple(
        n if base.count(n) == 1 else f"{n}_{base[:i].count(n)}" for i, n in enumerate(base)
    )


class ChainState:
    """State of ``chain``: the inner states, addressable by name or by index.

    ``state["scale_by_adam"]``, ``state.scale_by_adam`` and ``state[0]`` are the same.
    """

    __slots__ = ("names", "states")
    names: tuple[str, ...]
    states: tuple[OptState, ...]

    def __init__(self, names: Iterable[str], states: Iterable[OptState]):
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "states", tuple(states))

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __reduce__(self):  # pickle and copy rebuild through __init__, not setattr
        return ChainState, (self.names, self.states)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"no transform named {key!r} in chain; names: {self.names}")
            return self.states[self.names.index(key)]
        return self.states[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(str(e)) from None

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self):
        return iter(self.states)

    def __eq__(self, other):
        if not isinstance(other, ChainState):
            return NotImplemented
        return self.names == other.names and self.states == other.states

    # Unhashable (states hold arrays): defining __eq__ without __hash__ sets it to None.

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s!r}" for n, s in zip(self.names, self.states))
        return f"ChainState({inner})"


jax.tree_util.register_pytree_with_keys(
    ChainState,
    lambda s: ([(jax.tree_util.GetAttrKey(n), x) for n, x in zip(s.names, s.states)], s.names),
    lambda names, states: ChainState(names, states),
    lambda s: (s.states, s.names),
)


class chain(GradientTransformation):
    """Applies transforms in sequence: u <- t_n(... t_2(t_1(u))).

    ``chain(a, b)`` names inner states after the transform types (``scale_by_adam``;
    repeated types get ``_0``, ``_1`` suffixes); ``chain(clip=a, adam=b)`` uses the given
    names. Positional transforms come first. ``update``'s extra keyword arguments
    (``value``, ``grad``, ...) are passed to every member. Float16/bfloat16 updates are
    cast to float32 on entry, members exchange float32, and each leaf is rounded back to
    its incoming dtype once on exit (kept wider where a member that lands parameters,
    ``lands_on_params``, made it the parameter's wider dtype).

    Args:
      *transforms: the members, applied in order, named after their types.
      name: a label for the chain's repr (the named optimizers set it, e.g. ``"adam"``).
        Default None.
      **named: more members, applied after the positional ones, named by their keyword.

    Example:
      >>> tx = gx.chain(gx.clip(1.0), gx.scale(-0.5))
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([2.0, -0.5]), state)
      >>> updates
      Array([-0.5 ,  0.25], dtype=float32)
      >>> state.names
      ('clip', 'scale')
      >>> gx.chain(clip=gx.clip(1.0), adam=gx.adam(1e-3)).adam.name
      'adam'
    """

    transforms: tuple
    names: tuple = static_field()
    name: str | None = static_field(default=None)

    def __init__(
        self,
        *transforms: GradientTransformation,
        name: str | None = None,
        **named: GradientTransformation,
    ):
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"chain: name labels the chain and must be a string, got {name!r} (a member "
                "cannot be called 'name')"
            )
        # Member names are also attributes (tx.adam, state.adam): none may shadow one.
        reserved = [k for k in named if k in ("names", "states", "transforms", "init", "update")]
        if reserved:
            raise ValueError(f"chain: {reserved[0]!r} is reserved, choose another member name")
        all_tx = (*transforms, *named.values())
        for i, t in enumerate(all_tx):
            check_transform("chain", f"argument {i}", t)
        names = (*_unique_names(transforms), *named.keys())
        if len(set(names)) != len(names):
            raise ValueError(f"chain: names must be unique, got {names}")
        object.__setattr__(self, "transforms", all_tx)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "name", name)

    def __getattr__(self, key: str) -> Any:
        # Reach an inner transform by name: gx.adam(1e-3).scale_by_adam.b1
        if key.startswith("__") or key in ("transforms", "names", "name"):
            raise AttributeError(key)
        if key in self.names:
            return self.transforms[self.names.index(key)]
        raise AttributeError(f"chain has no transform named {key!r}; names: {self.names}")

    def __getitem__(self, key: int | str) -> GradientTransformation:
        if isinstance(key, str):
            return getattr(self, key)
        return self.transforms[key]

    # Members that are structure (_is_static_member: Optax transforms) go in the treedef
    # with their positions; the others are children, keyed by member name.
    def _static_members(self) -> tuple:
        return tuple((i, t) for i, t in enumerate(self.transforms) if _is_static_member(t))

    def _tree_flatten_with_keys(self):
        static = self._static_members()
        skip = {i for i, _ in static}
        keyed = [
            (jax.tree_util.GetAttrKey(n), t)
            for i, (n, t) in enumerate(zip(self.names, self.transforms))
            if i not in skip
        ]
        return keyed, (self.names, self.name, static)

    def _tree_flatten(self):
        static = self._static_members()
        skip = {i for i, _ in static}
        children = [t for i, t in enumerate(self.transforms) if i not in skip]
        return children, (self.names, self.name, static)

    @classmethod
    def _tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        members = list(children)
        for i, t in aux[2]:
            members.insert(i, t)
        object.__setattr__(obj, "transforms", tuple(members))
        object.__setattr__(obj, "names", aux[0])
        object.__setattr__(obj, "name", aux[1])
        return obj

    def __repr__(self) -> str:
        # The longest prefix named as positional members would be: those print bare.
        k = len(self.transforms)
        while k and _unique_names(self.transforms[:k]) != self.names[:k]:
            k -= 1
        parts = [repr(t) for t in self.transforms[:k]]
        parts += [f"{n}={t!r}" for n, t in zip(self.names[k:], self.transforms[k:])]
        if self.name:
            parts.append(f"name={self.name!r}")
        return f"chain({', '.join(parts)})"

    def init(self, params):
        check_param_dtypes(params, "params")
        return ChainState(self.names, tuple(t.init(params) for t in self.transforms))

    def update(self, updates, state, params=None, **extra):
        if not isinstance(state, ChainState) or state.names != self.names:
            got = state.names if isinstance(state, ChainState) else type(state).__name__
            raise ValueError(
                f"chain.update: state does not belong to this chain: expected a ChainState "
                f"with names {self.names}, got {got}. Did you init a different transform?"
            )
        check_params(updates, params)
        # Members exchange at least float32: a float16/bfloat16 update is upcast once
        # here and rounded once on the way out, so no intermediate (a momentum buffer
        # read back before the learning rate scales it) overflows or rounds on its way.
        updates, incoming = upcast_narrow(updates)
        new_states = []
        for name, t, s in zip(self.names, self.transforms, state.states):
            try:
                updates, s = t.update(updates, s, params, **extra)
            except (ValueError, TypeError) as e:
                e.add_note(f"(raised in chain step {name!r})")
                raise
            new_states.append(s)
        if incoming is not None:
            updates = round_back(updates, incoming, params if _lands(self) else None)
        return updates, ChainState(self.names, tuple(new_states))


def _lands(t: Any) -> bool:
    """True when ``t`` or a transform inside it lands parameters exactly on a target
    (projections, proximal steps: class attribute ``lands_on_params``)."""
    if getattr(type(t), "lands_on_params", False):
        return True
    inner = t.__dict__.get("inner") if hasattr(t, "__dict__") else None
    subs = [inner] if inner is not None else []
    members = t.__dict__.get("transforms") if hasattr(t, "__dict__") else None
    if isinstance(members, dict):
        subs += list(members.values())
    elif isinstance(members, tuple):
        subs += list(members)
    return any(_lands(x) for x in subs)


def named_chain(name: str, *transforms: GradientTransformation | None) -> chain:
    """``chain`` of the transforms that are not None, labelled ``name``."""
    return chain(*(t for t in transforms if t is not None), name=name)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, each leaf cast back to its parameter's dtype.

    The sum is formed in the wider of the two dtypes (so a float32 update to a bfloat16
    parameter is added in float32 and rounded once). ``None`` and non-array leaves of
    ``params`` are returned unchanged.

    Args:
      params: the parameter tree.
      updates: a tree like params (None leaves: no change).

    Example:
      >>> params = {"w": jnp.array([1.0, 2.0], jnp.bfloat16), "name": "layer"}
      >>> gx.apply_updates(params, {"w": jnp.array([0.5, -1.0]), "name": "layer"})
      {'name': 'layer', 'w': Array([1.5, 1], dtype=bfloat16)}
    """
    check_params(updates, params)
    add_arrays = per_leaf(_add, jax.tree_util.tree_leaves(updates))

    def add(path, p, u):
        def refuse(why):
            raise TypeError(f"apply_updates: at {jax.tree_util.keystr(path)}, {why}")

        if p is None and is_param(u):
            raise ValueError(
                "apply_updates: an update is an array where the parameter is None; "
                "check_tree_structure(params, updates) names the path"
            )
        if is_int_array(u):
            refuse(f"the update has dtype {u.dtype}; updates must be floating or complex")
        if u is None or not (is_param(p) or is_int_array(p)):
            return p
        if is_int_array(p) and is_param(u):
            refuse(f"the {p.dtype} parameter cannot take a {jnp.result_type(u)} update")
        if jnp.iscomplexobj(u) and not jnp.iscomplexobj(p):
            refuse("a complex update for a real parameter would lose its imaginary part")
        return add_arrays(jnp.asarray(p), u)

    return jax.tree_util.tree_map_with_path(add, params, updates, is_leaf=is_none)


def _add(p: jax.Array, u: Any) -> jax.Array:
    u = jnp.asarray(u)
    dt = wider_dtype(p.dtype, u.dtype)
    return cast(cast(p, dt) + cast(u, dt), p.dtype)
