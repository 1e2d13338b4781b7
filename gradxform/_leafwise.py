"""Leaf-wise machinery: dtype rules, state slots, and mapping a function over leaves.

The rules every transform follows:

- math runs in at least float32 (``compute_dtype``), whatever the parameter dtype;
- a state slot's storage dtype is its parameter's compute dtype unless overridden
  (``slot_dtype``), and is real for second moments of complex parameters;
- per-step scalars (bias corrections, schedule values) are float64 under x64
  (``scalar_dtype``) and are cast to each leaf's compute dtype before use;
- ``map_params`` / ``map_updates`` apply a per-leaf function to optimized leaves only and
  pass ``None`` and non-array leaves through.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, overload

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    check_param_dtypes,
    check_tree_structure,
    is_int_array,
    is_none,
    is_param,
    raise_int_update,
    raise_missing_slot,
    raise_shape,
)
from ._typing import Params, PyTree, TreeDef, Updates


def resolve(hparam: Any, count: jax.Array) -> Any:
    """A hyperparameter's value at step ``count``: schedules are called, numbers returned.

    A schedule must return a real scalar; anything else is a ``TypeError`` naming the
    schedule (an array broadcast over every leaf, or None, failed deep inside a transform).
    """
    if not callable(hparam):
        return hparam
    value = hparam(count)
    dtype = getattr(value, "dtype", None)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok |= dtype is not None and jnp.ndim(value) == 0 and jnp.issubdtype(dtype, jnp.number)
    if not ok or jnp.iscomplexobj(value):
        got = f"{dtype}{list(jnp.shape(value))}" if dtype is not None else repr(value)
        raise TypeError(f"the schedule {hparam!r} must return a real scalar, got {got}")
    return value


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


def scalar_like(value: Any, u: Any) -> jax.Array | np.ndarray:
    """A per-step scalar cast to the compute dtype of leaf ``u`` (so it never promotes).

    A Python or NumPy number becomes a NumPy scalar (a constant in the trace): making a
    device array of it would run an eager op per leaf while tracing.
    """
    dt = compute_dtype(u)
    if isinstance(value, jax.Array):
        return cast(value, dt)
    return np.asarray(value, dt)


@overload
def cast(x: jax.Array, dtype: Any) -> jax.Array: ...
@overload
def cast(x: np.ndarray, dtype: Any) -> np.ndarray: ...
def cast(x: jax.Array | np.ndarray, dtype: Any) -> jax.Array | np.ndarray:
    """``x.astype(dtype)``, skipped when ``x`` already has it (cheaper to trace)."""
    return x if x.dtype == dtype else x.astype(dtype)


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


def map_params(fn: Callable, tree: PyTree, *rest: PyTree) -> PyTree:
    """``fn(leaf, *rest_leaves)`` on optimized leaves; other leaves map to ``None``.

    Used by ``init``: state slots of non-optimized leaves are ``None``.
    """
    check_param_dtypes(tree, "params")
    return jax.tree_util.tree_map(
        lambda x, *r: fn(x, *r) if is_param(x) else None, tree, *rest, is_leaf=is_none
    )


def new_slot(x: Any, dtype: Any, fill: Any = 0) -> jax.Array:
    """A state slot for parameter ``x`` (array, ShapeDtypeStruct or Python scalar).

    Filled with ``fill`` (default 0). The slot gets the parameter's sharding wherever it
    is known, so optimizer state shards exactly like the parameters and is never built
    whole on one device first:

    - a concrete array, or a ``ShapeDtypeStruct`` carrying a sharding: that sharding;
    - a tracer (``init`` under ``jit``/``eval_shape``) whose type names mesh axes (a mesh
      with ``Explicit`` axes, ``jax.make_mesh``'s default, under ``jax.set_mesh``): that
      sharding, as ``out_sharding``. With ``Auto`` axes (``jax.sharding.Mesh``'s
      default) JAX does not show the input's sharding while tracing; there give
      ``jax.jit(tx.init, out_shardings=...)``, or call ``tx.init`` on ShapeDtypeStructs
      that carry shardings (outside ``jit``, or closed over by it).
    """
    shape = getattr(x, "shape", ())
    if isinstance(x, jax.core.Tracer):
        traced = _traced_sharding(x)
        if traced is not None:
            return jnp.full(shape, fill, dtype, out_sharding=traced)
        return jnp.full(shape, fill, dtype)
    if isinstance(x, jax.Array) and not x.committed:
        # An uncommitted parameter (jnp.zeros, flax's init) is on the default device and
        # free to move: so is its slot. A committed slot next to uncommitted parameters
        # changes the jitted step's input shardings after its first call (a 2nd compile).
        return jnp.full(shape, fill, dtype)
    sharding = getattr(x, "sharding", None)  # jax.Array; ShapeDtypeStruct (may be None)
    if isinstance(sharding, jax.sharding.Sharding):
        slot = jnp.full(shape, fill, dtype, device=sharding)
        if isinstance(slot, jax.core.Tracer) and len(sharding.device_set) > 1:
            # Under a trace (``jax.jit(lambda: tx.init(abstract_params))``) ``device=``
            # is dropped: constrain instead, so the compiled init builds it sharded.
            slot = jax.lax.with_sharding_constraint(slot, sharding)
        return slot
    if isinstance(sharding, jax.sharding.PartitionSpec):  # SDS built under jax.set_mesh
        return jnp.full(shape, fill, dtype, out_sharding=sharding)
    return jnp.full(shape, fill, dtype)


def new_reduced_slot(x: Any, shape: tuple, reduced: int, dtype: Any) -> jax.Array:
    """A zero slot of ``shape`` for a statistic of parameter ``x`` that averages away its
    dim ``reduced`` (Adafactor's row and column factors): sharded like ``x`` on the other
    dims, wherever ``new_slot`` would know ``x``'s sharding. It is the sharding the first
    update gives the statistic, so the step's inputs keep their shardings (one compile).
    """
    sharding = _traced_sharding(x) if isinstance(x, jax.core.Tracer) else None
    if sharding is None and not isinstance(x, jax.core.Tracer):
        sharding = getattr(x, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = [*sharding.spec, *[None] * (len(shape) - len(sharding.spec))]
        spec[reduced] = None
        sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
        if isinstance(x, jax.core.Tracer):
            return jnp.zeros(shape, dtype, out_sharding=sharding)
        return new_slot(jax.ShapeDtypeStruct(shape, dtype, sharding=sharding), dtype)
    return new_slot(jax.ShapeDtypeStruct(shape, dtype), dtype)


def _traced_sharding(x: jax.core.Tracer) -> Any:
    """The sharding a tracer's type shows, or None when it names no mesh axis (Auto axes
    hide the input's sharding while tracing: the spec reads P(None, ...))."""
    try:
        sharding = jax.typeof(x).sharding
    except AttributeError:  # an aval without sharding (older or exotic tracers)
        return None
    spec = getattr(sharding, "spec", None)
    if spec is None or all(axis is None for axis in spec):
        return None
    return sharding


class EncodedSlot:
    """Base of a state slot stored in another form than an array shaped like its
    parameter (``optimizers._quantize.QuantizedArray``: int8 blocks and scales). It is a
    pytree node whose leaves are arrays; ``map_updates`` hands it to the per-leaf function
    whole, which decodes and re-encodes it."""


def _slot_view(tree: PyTree) -> PyTree:
    """``tree`` with each ``EncodedSlot`` node replaced by a placeholder leaf, for
    comparing its structure with the updates'."""
    return jax.tree_util.tree_map(
        lambda x: 0.0 if isinstance(x, EncodedSlot) else x,
        tree,
        is_leaf=lambda x: x is None or isinstance(x, EncodedSlot),
    )


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
        dynamic = (jax.Array, np.ndarray, EncodedSlot)
        static = tuple(i for i, a in enumerate(args) if not isinstance(a, dynamic))
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
        names = ("updates", f"state slot {i}")
        try:
            check_tree_structure(updates, s, names=names, allow_none=True)
        except ValueError:
            # An encoded slot (8-bit moments) is a node where updates have a leaf.
            check_tree_structure(updates, _slot_view(s), names=names, allow_none=True)
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    slot_leaves = [treedef.flatten_up_to(s) for s in slots]
    outs: list[list[Any]] = [[] for _ in range(n_out)]
    leaf_fn = per_leaf(fn, leaves)
    for j, u in enumerate(leaves):
        args = [s[j] for s in slot_leaves]
        if isinstance(u, (float, complex)):  # a Python-number parameter's update
            u = jnp.asarray(u)
        if is_param(u):
            if any(a is None for a in args):
                raise_missing_slot(updates, j)
            for a in args:
                # A float slot (a moment, the parameter) has the parameter's shape; an
                # update of another shape would broadcast into it and change the state.
                if is_param(a) and jnp.shape(a) != jnp.shape(u):
                    raise_shape(updates, j, u, a)
            res = leaf_fn(u, *args)
        elif is_int_array(u):
            raise_int_update(updates, j, u)
        else:
            res = (u, *args)
        for k in range(n_out):
            outs[k].append(res[k])
    return tuple(treedef.unflatten(o) for o in outs)


def zeros_like_updates(updates: PyTree) -> PyTree:
    """Zeros for every array update, other leaves passed through."""
    return map_updates(lambda u: (jnp.zeros_like(u),), updates)[0]


def as_int(value: Any) -> jax.Array:
    """An integer hyperparameter (Python int, integral float, array) as an int32 scalar."""
    return jnp.asarray(value).astype(jnp.int32)


# --------------------------------------------------------------------------------------
# The dtype members of a chain exchange (base.chain): at least float32, rounded once


def upcast_narrow(updates: Updates) -> tuple[Updates, list | None]:
    """``updates`` with float16/bfloat16 array leaves cast to float32, and the incoming
    dtype of each leaf (None for leaves left alone); ``None`` when nothing was cast."""
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    incoming = [
        x.dtype if isinstance(x, (jax.Array, np.ndarray)) and is_narrow(x.dtype) else None
        for x in leaves
    ]
    if not any(d is not None for d in incoming):
        return updates, None
    up = [x if d is None else cast(x, jnp.float32) for x, d in zip(leaves, incoming)]
    return treedef.unflatten(up), incoming


@functools.lru_cache(maxsize=64)
def is_narrow(dtype: Any) -> bool:
    """A floating dtype narrower than float32 (float16, bfloat16, float8s): upcast."""
    return bool(jnp.issubdtype(dtype, jnp.floating)) and jnp.dtype(dtype).itemsize < 4


def round_back(updates: Updates, incoming: list, params: Params | None) -> Updates:
    """Each upcast leaf cast back to its incoming dtype, once, at the chain's exit.

    Only a leaf that is still the float32 the chain made of it: a member that chose
    another dtype keeps it. With ``params`` (a member lands parameters exactly on a
    target, see ``base._lands``) the leaf keeps the parameter's precision when it is wider,
    as that member made it: -p rounded to bfloat16 would miss 0.
    """
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    if len(leaves) != len(incoming):  # a member changed the tree: leave it as it is
        return updates
    ps = [None] * len(leaves)
    if params is not None:
        ps = jax.tree_util.tree_leaves(params, is_leaf=is_none)
    out = []
    for u, d, p in zip(leaves, incoming, ps):
        if d is not None and isinstance(u, (jax.Array, np.ndarray)) and u.dtype == jnp.float32:
            target = wider_dtype(d, jnp.result_type(p)) if is_param(p) else d
            u = cast(u, target)
        out.append(u)
    return treedef.unflatten(out)
