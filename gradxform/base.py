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
  transform with the dtype it came in with.
- Trees that must match (updates vs params vs state slots) are checked, and a mismatch
  names the first differing key path.

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

__all__ = [
    "Module",
    "GradientTransformation",
    "EmptyState",
    "ChainState",
    "chain",
    "identity",
    "stateless",
    "set_to_zero",
    "apply_updates",
    "static_field",
    "check_tree_structure",
]


# --------------------------------------------------------------------------------------
# Frozen pytree dataclasses


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the treedef (structure), not a leaf."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def _is_static_value(value: Any) -> bool:
    # A plain Python callable (a user's lambda schedule, a mask function) cannot be a jit
    # argument, so it is structure, not data. Modules are callable pytrees: never static.
    # A tuple holding one (join_schedules of a lambda and a schedule) is static whole.
    if isinstance(value, (tuple, list)):
        return any(map(_is_plain_callable, value))
    return _is_plain_callable(value)


def _is_plain_callable(value: Any) -> bool:
    return callable(value) and not isinstance(value, Module)


def value_or_id(x: Any) -> Any:
    """A cache-key part for ``x``: its value if hashable, else its identity (the caller
    keeps ``x`` alive while the key is in use, so the id stays ``x``'s)."""
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return ("value", x)


@functools.cache
def _field_kinds(cls: type) -> tuple[tuple[str, bool], ...]:
    # dataclasses.fields costs microseconds per call, and a transform passed to a jitted
    # step is flattened on every call: compute each class's field list once.
    return tuple((f.name, bool(f.metadata.get("static"))) for f in dataclasses.fields(cls))


class Module:
    """Base of transforms and schedules: a frozen dataclass that is also a pytree.

    Subclasses are turned into frozen dataclasses automatically. Fields declared with
    ``static_field()`` and fields holding plain callables go in the treedef; all other
    fields are children (leaves or sub-pytrees). ``__post_init__`` runs validation on
    construction only: unflattening (inside ``jit``) bypasses it, so tracers never meet
    Python-side range checks.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        # Storage dtype options (mu_dtype, nu_dtype, ...) are checked at construction.
        dtype_fields = [f.name for f in dataclasses.fields(cls) if f.name.endswith("_dtype")]
        if dtype_fields:
            init = cls.__init__

            @functools.wraps(init)
            def checked_init(self, *args, **kw):
                init(self, *args, **kw)
                for name in dtype_fields:
                    _check_dtype_option(type(self).__name__, name, getattr(self, name))

            cls.__init__ = checked_init
        jax.tree_util.register_pytree_with_keys(
            cls, cls._tree_flatten_with_keys, cls._tree_unflatten, cls._tree_flatten
        )

    # -- pytree protocol --
    def _split(self) -> tuple[list[tuple[str, Any]], tuple]:
        children, static = [], []
        for name, is_static in _field_kinds(type(self)):
            value = getattr(self, name)
            if is_static or _is_static_value(value):
                static.append((name, value))
            else:
                children.append((name, value))
        names = tuple(n for n, _ in children)
        return children, (type(self), names, tuple(static))

    def _tree_flatten_with_keys(self):
        children, aux = self._split()
        return [(jax.tree_util.GetAttrKey(n), v) for n, v in children], aux

    def _tree_flatten(self):
        children, aux = self._split()
        return [v for _, v in children], aux

    @classmethod
    def _tree_unflatten(cls, aux, children):
        _, names, static = aux
        obj = object.__new__(cls)
        for name, value in (*zip(names, children), *static):
            object.__setattr__(obj, name, value)
        return obj

    # -- value semantics --
    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        a, ta = jax.tree_util.tree_flatten(self)
        b, tb = jax.tree_util.tree_flatten(other)
        return ta == tb and all(_leaf_equal(x, y) for x, y in zip(a, b))

    def __hash__(self) -> int:
        leaves, treedef = jax.tree_util.tree_flatten(self)
        try:
            return hash((treedef, tuple(leaves)))
        except TypeError as e:
            raise TypeError(
                f"{type(self).__name__} is not hashable because a hyperparameter is an "
                "array; build it from Python numbers to use it as static metadata "
                "(e.g. in flax TrainState), or pass it to jit as an argument instead."
            ) from e

    def __repr__(self) -> str:
        args = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"{type(self).__name__}({args})"


def _leaf_equal(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return False
    if isinstance(x, (jax.Array, np.ndarray)) or isinstance(y, (jax.Array, np.ndarray)):
        x, y = np.asarray(x), np.asarray(y)
        return x.dtype == y.dtype and x.shape == y.shape and bool(np.all(x == y))
    return type(x) is type(y) and x == y


# --------------------------------------------------------------------------------------
# Hyperparameter validation (construction time only)


def _concrete_number(value: Any) -> float | None:
    """The value as a Python number, or None when it is traced or not a scalar number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and not isinstance(
        value, jax.core.Tracer
    ):
        dtype = np.asarray(value).dtype
        if np.ndim(value) == 0 and np.issubdtype(dtype, np.number) and dtype.kind != "c":
            return float(np.asarray(value))
    return None


def check_hparam(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    schedule: bool = False,
) -> None:
    """Raise ``ValueError`` if a hyperparameter is not a finite number in range.

    Traced values pass (they cannot be checked in Python). Callables pass only when the
    hyperparameter accepts a schedule.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if callable(value):
        if schedule:
            return
        raise TypeError(f"{owner}: {name} does not accept a schedule, got {value!r}")
    number = _concrete_number(value)
    if number is None:
        kind = "a number or a schedule" if schedule else "a real number"
        raise TypeError(f"{owner}: {name} must be {kind}, got {value!r}")
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    bounds = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = not math.isfinite(number)
    bad |= low is not None and (number <= low if low_open else number < low)
    bad |= high is not None and (number >= high if high_open else number > high)
    if bad:
        raise ValueError(f"{owner}: {name} must be a finite number in {bounds}, got {value!r}")


def resolve(hparam: Any, count: jax.Array) -> Any:
    """A hyperparameter's value at step ``count``: schedules are called, numbers returned."""
    return hparam(count) if callable(hparam) else hparam


def scalar_dtype() -> jnp.dtype:
    """dtype for per-step scalars (bias corrections, schedule values): float64 under x64.

    Scalars are cast to each leaf's compute dtype before use, so float32 parameters never
    get promoted; float64 parameters get float64-exact step sizes (torch.optim parity).
    """
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def safe_increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the dtype's maximum instead of wrapping to negative."""
    big = jnp.iinfo(count.dtype).max
    return jnp.where(count < big, count + 1, count)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def scalar_like(value: Any, u: Any) -> jax.Array:
    """A per-step scalar cast to the compute dtype of leaf ``u`` (so it never promotes).

    A Python or NumPy number becomes a NumPy scalar (a constant in the trace): making a
    device array of it would run an eager op per leaf while tracing.
    """
    dt = compute_dtype(u)
    if isinstance(value, jax.Array):
        return cast(value, dt)
    return np.asarray(value, dt)


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """``x.astype(dtype)``, skipped when ``x`` already has it (cheaper to trace)."""
    return x if x.dtype == dtype else x.astype(dtype)


# --------------------------------------------------------------------------------------
# Parameter leaves, dtypes and tree structure


def _is_none(x: Any) -> bool:
    return x is None


def is_param(x: Any) -> bool:
    """True for leaves that are optimized: inexact arrays (and Python floats/complex)."""
    if isinstance(x, (float, complex)):
        return True
    if isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return False


def _check_param_dtypes(tree: PyTree, what: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)[0]:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                raise TypeError(
                    f"{what} leaf at {jax.tree_util.keystr(path) or '<root>'} has dtype "
                    f"{leaf.dtype}; only floating or complex arrays can be optimized. Replace "
                    "it with None in the tree you optimize, or freeze it with a mask."
                )


def compute_dtype(x: Any) -> jnp.dtype:
    """The dtype math runs in for a leaf: at least float32 (bf16/f16 -> f32)."""
    # A jax array's dtype is already canonical; jnp.result_type is slow to call per leaf.
    dt = x.dtype if isinstance(x, jax.Array) else jnp.dtype(jnp.result_type(x))
    if jnp.issubdtype(dt, jnp.floating) and dt.itemsize < 4:
        return jnp.dtype(jnp.float32)
    return dt


def wider_dtype(*dtypes: Any) -> jnp.dtype:
    """The standard JAX promotion of dtypes, whatever the user's promotion mode.

    Used where the library widens on purpose (e.g. bf16 param + f32 update), so that
    ``jax_numpy_dtype_promotion="strict"`` in user code does not break it.
    """
    return _wider(tuple(jnp.dtype(d) for d in dtypes))


def landing_dtypes(u: jax.Array, p: Any) -> tuple[jnp.dtype, jnp.dtype]:
    """(compute dtype, update dtype) of an update that must land ``p`` exactly on a
    target (projections, prox): both at least p's dtype, because -p rounded to a narrower
    update dtype misses (a bf16 update left a float32 parameter at -3e-4, not 0)."""
    p_dtype = jnp.result_type(p)
    return wider_dtype(compute_dtype(u), p_dtype), wider_dtype(u.dtype, p_dtype)


@functools.lru_cache(maxsize=256)
def _wider(dtypes: tuple) -> jnp.dtype:
    with jax.numpy_dtype_promotion("standard"):
        return jnp.dtype(jnp.result_type(*dtypes))


def slot_dtype(x: Any, override: Any = None, *, real: bool = False) -> jnp.dtype:
    """Storage dtype of a state slot: ``override`` if given, else the compute dtype.

    ``real=True`` is for second-moment slots, which hold |g|^2 and are real for complex
    parameters. Otherwise a complex parameter's slot is complex: a real ``override``
    (``mu_dtype=jnp.float32`` on a mixed tree) gives its precision (complex64).
    """
    dt = jnp.dtype(override) if override is not None else compute_dtype(x)
    if real:
        return jnp.finfo(dt).dtype
    if override is not None and jnp.issubdtype(compute_dtype(x), jnp.complexfloating):
        return wider_dtype(dt, jnp.complex64)
    return dt


def _check_dtype_option(owner: str, name: str, value: Any) -> None:
    if value is None:
        return
    try:
        dt = jnp.dtype(value)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.inexact):
        raise TypeError(
            f"{owner}: {name} must be None or a floating dtype (jnp.float32, jnp.bfloat16, "
            f"...), got {value!r}"
        )


def _describe(x: Any) -> str:
    if x is None:
        return "None"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{type(x).__name__}[{x.dtype}{list(x.shape)}]"
    return f"{type(x).__name__}"


def check_tree_structure(
    expected: PyTree, received: PyTree, *, names=("expected", "received"), allow_none=False
):
    """Raise ``ValueError`` naming the first key path where two trees differ.

    ``None`` counts as a leaf, so ``{"a": None}`` and ``{"a": x}`` differ at ``['a']``,
    unless ``allow_none``: then ``None`` may stand opposite anything (the transforms use
    this, where a ``None`` update means "leave this parameter alone").
    """
    ta = jax.tree_util.tree_structure(expected, is_leaf=_is_none)
    tb = jax.tree_util.tree_structure(received, is_leaf=_is_none)
    if ta == tb:
        if allow_none:
            return
        la, lb = ta.flatten_up_to(expected), tb.flatten_up_to(received)
        if all((x is None) == (y is None) for x, y in zip(la, lb)):
            return
    pa = jax.tree_util.tree_flatten_with_path(expected, is_leaf=_is_none)[0]
    pb = jax.tree_util.tree_flatten_with_path(received, is_leaf=_is_none)[0]
    da = {jax.tree_util.keystr(p): v for p, v in pa}
    db = {jax.tree_util.keystr(p): v for p, v in pb}
    missing = [k for k in da if k not in db]
    extra = [k for k in db if k not in da]
    both = [k for k in da if k in db and (da[k] is None) != (db[k] is None)]
    ea, eb = names
    lines = [f"tree structures differ ({ea} vs {eb})."]
    if missing:
        lines.append(
            f"  first path in {ea} but not in {eb}: {missing[0] or '<root>'}"
            f" ({len(missing)} such path(s))"
        )
    if extra:
        lines.append(
            f"  first path in {eb} but not in {ea}: {extra[0] or '<root>'}"
            f" ({len(extra)} such path(s))"
        )
    if both:
        k = both[0]
        lines.append(
            f"  first path that is None in one tree only: {k or '<root>'}: "
            f"{ea} {_describe(da[k])}, {eb} {_describe(db[k])}"
        )
    if not (missing or extra or both):
        lines.append("  same leaf paths but different node types")
    lines.append(f"  {ea}: {ta}")
    lines.append(f"  {eb}: {tb}")
    raise ValueError("\n".join(lines))


def map_params(fn: Callable, tree: PyTree, *rest: PyTree) -> PyTree:
    """``fn(leaf, *rest_leaves)`` on optimized leaves; other leaves map to ``None``.

    Used by ``init``: state slots of non-optimized leaves are ``None``.
    """
    _check_param_dtypes(tree, "params")
    return jax.tree_util.tree_map(
        lambda x, *r: fn(x, *r) if is_param(x) else None, tree, *rest, is_leaf=_is_none
    )


def new_slot(x: Any, dtype: Any, fill: Any = 0) -> jax.Array:
    """A state slot for parameter ``x`` (array, ShapeDtypeStruct or Python scalar).

    Filled with ``fill`` (default 0). A concrete sharded parameter gets a slot with the
    same sharding, so optimizer state shards exactly like the parameters.
    """
    shape = getattr(x, "shape", ())
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return jnp.full(shape, fill, dtype, device=x.sharding)
    return jnp.full(shape, fill, dtype)


def abs2(g: jax.Array) -> jax.Array:
    """|g|^2, real for complex g."""
    if jnp.iscomplexobj(g):
        return jnp.real(g) ** 2 + jnp.imag(g) ** 2
    return g * g


# Per-leaf functions with fewer equations than this are traced leaf by leaf (see per_leaf).
_NESTED_MIN_EQNS = 8


def per_leaf(fn: Callable, leaves: list) -> Callable:
    """``fn`` itself, or, while tracing, ``fn`` under a nested ``jax.jit`` if it is big.

    Why: under tracing every leaf would otherwise re-trace the same few dozen jnp calls
    (at 1,000 Adam leaves that was most of the time spent before XLA). Nested jit traces
    ``fn`` once per distinct leaf shape/dtype and lowers it once as a shared function;
    XLA inlines the calls, so the compiled program and its numerics are unchanged. Each
    call costs XLA some compile time, though (inlining, call-graph passes: ~0.1 ms), more
    than re-tracing a function of a few equations saves, so a small ``fn`` (judged on its
    first jaxpr) stays plain. Eager calls keep plain ``fn``: a fresh closure per update
    would recompile each step. ``fn`` must be pure (no Python side effects): it may run
    once per distinct signature; its outputs come back as arrays.
    """
    if not any(isinstance(x, jax.core.Tracer) for x in leaves):
        return fn
    chosen: dict[tuple, Callable] = {}

    def call(*args):
        # Arguments that are not arrays (Python bools of a mask, Python-float params)
        # reach fn as themselves, as static arguments.
        static = tuple(i for i, a in enumerate(args) if not isinstance(a, (jax.Array, np.ndarray)))
        impl = chosen.get(static)
        if impl is None:
            jitted = jax.jit(fn, static_argnums=static)
            big = len(jitted.trace(*args).jaxpr.eqns) >= _NESTED_MIN_EQNS
            impl = chosen[static] = jitted if big else fn
        return impl(*args)

    return call


def map_updates(fn: Callable, updates: PyTree, *slots: PyTree, n_out: int = 1):
    """Apply ``fn(u, *slot_leaves) -> tuple`` of ``n_out`` outputs leaf-wise.

    Checks each slot tree has the structure of ``updates``. Leaves whose update is
    ``None`` or not an array pass through unchanged, with their slots.
    Returns a tuple of ``n_out`` trees shaped like ``updates``.
    """
    for i, s in enumerate(slots):
        check_tree_structure(updates, s, names=("updates", f"state slot {i}"), allow_none=True)
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_is_none)
    slot_leaves = [treedef.flatten_up_to(s) for s in slots]
    outs: list[list[Any]] = [[] for _ in range(n_out)]
    leaf_fn = per_leaf(fn, leaves)
    for j, u in enumerate(leaves):
        args = [s[j] for s in slot_leaves]
        if isinstance(u, (float, complex)):  # a Python-number parameter's update
            u = jnp.asarray(u)
        if is_param(u):
            if any(a is None for a in args):
                _raise_missing_slot(updates, j)
            for a in args:
                # A float slot (a moment, the parameter) has the parameter's shape; an
                # update of another shape would broadcast into it and change the state.
                if is_param(a) and jnp.shape(a) != jnp.shape(u):
                    _raise_shape(updates, j, u, a)
            res = leaf_fn(u, *args)
        elif _is_int_array(u):
            _raise_int_update(updates, j, u)
        else:
            res = (u, *args)
        for k in range(n_out):
            outs[k].append(res[k])
    return tuple(treedef.unflatten(o) for o in outs)


def _is_int_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and (
        jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.bool_)
    )


def _leaf_path(tree: PyTree, j: int) -> str:
    """The key path of ``tree``'s j-th leaf (None counted as a leaf), for error messages."""
    path = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)[0][j][0]
    return jax.tree_util.keystr(path) or "<root>"


def _raise_int_update(updates: PyTree, j: int, u: Any) -> None:
    raise TypeError(
        f"updates leaf at {_leaf_path(updates, j)} has dtype {u.dtype}: "
        "updates must be floating or complex (gradients of such parameters); give None "
        "for a leaf that is not optimized"
    )


def _raise_shape(tree: PyTree, j: int, u: Any, param: Any) -> None:
    raise ValueError(
        f"updates leaf at {_leaf_path(tree, j)} has shape {tuple(jnp.shape(u))}, its "
        f"parameter {tuple(jnp.shape(param))}"
    )


def _raise_missing_slot(updates: PyTree, j: int) -> None:
    raise ValueError(
        f"updates has an array at {_leaf_path(updates, j)} but the state has no slot "
        "there, or params has None there: that parameter was None or not an array when "
        "the state was initialized (or is None now). Give None as its update, or re-run "
        "init with the new params."
    )


def need_params(owner: str, params: PyTree | None) -> None:
    """Raise a ``ValueError`` saying that ``owner`` needs ``params`` passed to ``update``."""
    if params is None:
        raise ValueError(
            f"{owner} needs the current parameters: call tx.update(grads, state, params)"
        )


class StaticTree:
    """A pytree of Python values (bools, strings) held as static structure.

    Hashable and compared by value (``True`` and ``1`` differ), so a transform holding a
    mask or a label tree can be a jit argument or Flax ``TrainState`` metadata.
    """

    __slots__ = ("tree", "_key")

    def __init__(self, tree: PyTree):
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_is_none)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "_key", (treedef, tuple((type(x), x) for x in leaves)))

    def __setattr__(self, name, value):
        raise AttributeError("StaticTree is immutable")

    def __reduce__(self):  # pickle and copy rebuild through __init__, not setattr
        return StaticTree, (self.tree,)

    def __eq__(self, other):
        return isinstance(other, StaticTree) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return repr(self.tree)


def check_params(updates: PyTree, params: PyTree | None) -> None:
    """updates has params' structure and, where both are arrays, its shapes."""
    if params is not None:
        check_tree_structure(params, updates, names=("params", "updates"), allow_none=True)
        check_shapes(params, updates)


def check_shapes(params: PyTree, updates: PyTree) -> None:
    """A ``ValueError`` naming the first path where an update's shape is not its
    parameter's (JAX would broadcast it silently, changing the parameter's shape)."""
    xs = jax.tree_util.tree_leaves(params, is_leaf=_is_none)
    us = jax.tree_util.tree_leaves(updates, is_leaf=_is_none)
    for j, (x, u) in enumerate(zip(xs, us)):
        if hasattr(x, "shape") and hasattr(u, "shape") and x.shape != u.shape:
            _raise_shape(params, j, u, x)


# --------------------------------------------------------------------------------------
# The protocol


class EmptyState(NamedTuple):
    """State of a stateless transform."""


def empty_state(params: PyTree) -> EmptyState:
    """``init`` of a stateless transform: checks params like every other ``init`` (an
    integer leaf is refused with its path: its update would be dropped by
    ``apply_updates``), then holds nothing."""
    _check_param_dtypes(params, "params")
    return EmptyState()


class GradientTransformation(Module):
    """A pure gradient transformation: ``init`` then repeated ``update``.

    ``update`` accepts extra keyword arguments (``value``, ``grad``, ``value_fn`` ...);
    transforms that do not need them ignore them, and ``chain`` forwards them to all.
    """

    def init(self, params: PyTree) -> Any:
        raise NotImplementedError

    def update(
        self, updates: PyTree, state: Any, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, Any]:
        raise NotImplementedError


class identity(GradientTransformation):  # noqa: N801
    """Leaves updates unchanged: u <- u."""

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return updates, state


class stateless(GradientTransformation):  # noqa: N801
    """A transform from a pure function ``fn(updates, params) -> updates``.

    ``fn`` is static (part of the treedef): equal only when it is the same function.
    """

    fn: Callable

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return self.fn(updates, params), state


def zeros_like_updates(updates: PyTree) -> PyTree:
    """Zeros for every array update, other leaves passed through."""
    return map_updates(lambda u: (jnp.zeros_like(u),), updates)[0]


class set_to_zero(GradientTransformation):  # noqa: N801
    """Replaces every update by zeros of the same shape and dtype: u <- 0.

    Typically used through masking to freeze parameters.
    """

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return zeros_like_updates(updates), state


def _unique_names(transforms: tuple) -> tuple[str, ...]:
    # A named optimizer inside a chain is called by its name ("adamw"), not "chain".
    base = [
        getattr(t, "name", None) or type(t).__name__ if isinstance(t, chain) else type(t).__name__
        for t in transforms
    ]
    return tuple(
        n if base.count(n) == 1 else f"{n}_{base[:i].count(n)}" for i, n in enumerate(base)
    )


class ChainState:
    """State of ``chain``: the inner states, addressable by name or by index.

    ``state["scale_by_adam"]``, ``state.scale_by_adam`` and ``state[0]`` are the same.
    """

    __slots__ = ("names", "states")

    def __init__(self, names: tuple[str, ...], states: tuple):
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

    __hash__ = None  # states hold arrays

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s!r}" for n, s in zip(self.names, self.states))
        return f"ChainState({inner})"


jax.tree_util.register_pytree_with_keys(
    ChainState,
    lambda s: ([(jax.tree_util.GetAttrKey(n), x) for n, x in zip(s.names, s.states)], s.names),
    lambda names, states: ChainState(names, states),
    lambda s: (s.states, s.names),
)


class chain(GradientTransformation):  # noqa: N801
    """Applies transforms in sequence: u <- t_n(... t_2(t_1(u))).

    ``chain(a, b)`` names inner states after the transform types (``scale_by_adam``;
    repeated types get ``_0``, ``_1`` suffixes); ``chain(clip=a, adam=b)`` uses the given
    names. Positional transforms come first. ``name`` labels the chain in its repr (the
    named optimizers set it, e.g. ``"adam"``).
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
            if not (hasattr(t, "init") and hasattr(t, "update")):
                raise TypeError(
                    f"chain: argument {i} must be a gradient transformation (with .init and "
                    f".update), got {t!r}"
                )
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

    def _tree_flatten_with_keys(self):
        keyed = [(jax.tree_util.GetAttrKey(n), t) for n, t in zip(self.names, self.transforms)]
        return keyed, (self.names, self.name)

    def _tree_flatten(self):
        return list(self.transforms), (self.names, self.name)

    @classmethod
    def _tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "transforms", tuple(children))
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
        _check_param_dtypes(params, "params")
        return ChainState(self.names, tuple(t.init(params) for t in self.transforms))

    def update(self, updates, state, params=None, **extra):
        if not isinstance(state, ChainState) or state.names != self.names:
            got = state.names if isinstance(state, ChainState) else type(state).__name__
            raise ValueError(
                f"chain.update: state does not belong to this chain: expected a ChainState "
                f"with names {self.names}, got {got}. Did you init a different transform?"
            )
        check_params(updates, params)
        new_states = []
        for name, t, s in zip(self.names, self.transforms, state.states):
            try:
                updates, s = t.update(updates, s, params, **extra)
            except (ValueError, TypeError) as e:
                e.add_note(f"(raised in chain step {name!r})")
                raise
            new_states.append(s)
        return updates, ChainState(self.names, tuple(new_states))


def is_active(hparam: Any) -> bool:
    """False only for a hyperparameter that is the number 0 (so its term can be left out)."""
    return callable(hparam) or _concrete_number(hparam) != 0


def named_chain(name: str, *transforms: GradientTransformation | None) -> chain:
    """``chain`` of the transforms that are not None, labelled ``name``."""
    return chain(*(t for t in transforms if t is not None), name=name)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Returns ``params + updates``, each leaf cast back to its parameter's dtype.

    The sum is formed in the wider of the two dtypes (so a float32 update to a bfloat16
    parameter is added in float32 and rounded once). ``None`` and non-array leaves of
    ``params`` are returned unchanged.
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
        if _is_int_array(u):
            refuse(f"the update has dtype {u.dtype}; updates must be floating or complex")
        if u is None or not (is_param(p) or _is_int_array(p)):
            return p
        if _is_int_array(p) and is_param(u):
            refuse(f"the {p.dtype} parameter cannot take a {jnp.result_type(u)} update")
        if jnp.iscomplexobj(u) and not jnp.iscomplexobj(p):
            refuse("a complex update for a real parameter would lose its imaginary part")
        return add_arrays(jnp.asarray(p), u)

    return jax.tree_util.tree_map_with_path(add, params, updates, is_leaf=_is_none)


def _add(p: jax.Array, u: Any) -> jax.Array:
    u = jnp.asarray(u)
    dt = wider_dtype(p.dtype, u.dtype)
    return cast(cast(p, dt) + cast(u, dt), p.dtype)
