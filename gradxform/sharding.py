"""Optimizer-state sharding over a data-parallel mesh axis (ZeRO stage 1).

With plain data parallelism every device holds the whole optimizer state and computes the
whole update. ``zero1(tx, mesh, axis="data")`` splits both over the ``axis`` devices: each
state leaf is sharded along one of its dimensions, each device updates its 1/N of the
state, and the updates are gathered back to every device. Only JAX's own machinery is
used (``NamedSharding``, ``jax.lax.with_sharding_constraint``, ``jit``): the one
all-gather per leaf is inserted by XLA, never written by hand.

Placement rule, per array leaf of the wrapped transform's state (and per gradient leaf,
so that each device computes only its part of the update):

- a leaf whose sharding already uses ``axis`` keeps it (FSDP-style parameters sharded
  over ``axis``: the state follows the parameters, nothing moves);
- otherwise its first dimension whose size is divisible by the ``axis`` size is sharded
  over ``axis``, the other dimensions keep their sharding (model parallelism on another
  mesh axis is kept);
- scalars (counts, learning rates) and leaves with no divisible dimension stay as they
  are, replicated over ``axis``; nothing is padded (pad such leaves yourself, or use
  ``ParamLayout`` to flatten the parameters into one buffer, if they matter).

Under ``jit`` on a mesh with ``Auto`` axes (``jax.sharding.Mesh``'s default) the traced
state does not show its sharding, so the rule is applied to shapes alone: the first
divisible dimension gets ``axis`` and the others are left unconstrained. Keep that
dimension free of other mesh axes (model parallelism on a later dimension), or the
constraint reshards it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from ._checks import check_transform, is_param
from ._leafwise import _traced_sharding
from ._module import static_field
from ._typing import OptState, PyTree
from .base import GradientTransformation

__all__ = ["Zero1State", "zero1", "zero1_spec"]

_FREE = jax.sharding.PartitionSpec.UNCONSTRAINED


class Zero1State(NamedTuple):
    inner_state: OptState  # the wrapped transform's state; its array leaves sharded over axis


def _uses(entry: Any, axis: str) -> bool:
    return entry == axis or (isinstance(entry, tuple) and axis in entry)


def zero1_spec(
    shape: tuple[int, ...], spec: Any, axis: str, size: int
) -> jax.sharding.PartitionSpec | None:
    """The ``PartitionSpec`` ZeRO-1 gives a leaf of ``shape`` now sharded as ``spec``.

    ``spec`` is the leaf's current ``PartitionSpec`` (or None when unknown: under ``jit``
    with ``Auto`` axes). Returns None where the leaf stays as it is: a scalar, a leaf
    already sharded over ``axis``, or one with no free dimension divisible by ``size``.
    With ``spec`` unknown, the dimensions other than the chosen one are
    ``PartitionSpec.UNCONSTRAINED``.

    Args:
      shape: the leaf's shape.
      spec: its current ``PartitionSpec``, or None if unknown.
      axis: the data-parallel mesh axis name.
      size: that axis's size.

    Example:
      >>> from jax.sharding import PartitionSpec as P
      >>> tuple(gx.zero1_spec((6, 8), P(), "data", 4))  # dim 0 (6) does not divide by 4
      (None, 'data')
      >>> tuple(gx.zero1_spec((8, 16), P(None, "model"), "data", 2))
      ('data', 'model')
      >>> gx.zero1_spec((8,), P("data"), "data", 2) is None  # FSDP: already sharded
      True
    """
    if not shape:
        return None
    known = spec is not None
    entries = list(spec) if known else [_FREE] * len(shape)
    entries += [None] * (len(shape) - len(entries))
    if any(_uses(e, axis) for e in entries):
        return None
    for d, n in enumerate(shape):
        if n % size == 0 and entries[d] in (None, _FREE):
            entries[d] = axis
            return jax.sharding.PartitionSpec(*entries)
    return None


class zero1(GradientTransformation):
    """ZeRO-1: shards ``inner``'s optimizer state and update math over a mesh axis.

    With parameters replicated over ``axis`` (plain data parallelism), every array leaf
    of ``inner``'s state is sharded over ``axis`` along its first dimension divisible by
    the axis size (see the module docstring for the rule), so each device stores and
    updates 1/N of the state; the incoming gradients are constrained to the same layout
    (a local slice of a replicated value: no communication), and the outgoing updates
    are constrained back to replicated over ``axis`` (the all-gather XLA inserts is the
    only communication). With parameters already sharded over ``axis`` (FSDP), the
    state follows them and nothing moves; pass ``gather_updates=False`` to keep the
    updates sharded like the parameters.

    For an elementwise ``inner`` (adam, sgd, ...) the numbers are bitwise those of the
    unsharded run: each element sees the same arithmetic. A reduction over the
    parameters inside ``inner`` (``clip_by_global_norm``) becomes per-device partial sums
    plus an all-reduce, so it can differ in the last bits; keep it outside ``zero1`` to
    compute it on the replicated gradients, ``chain(clip_by_global_norm(1.0),
    zero1(adam(1e-3), mesh))``.

    Use it inside ``jax.jit``; give the step's ``in_shardings``/``out_shardings`` for the
    state as the shardings of ``init``'s output (``jax.tree.map(lambda x: x.sharding,
    state)``), or let ``jit`` take them from the committed state arrays.

    Args:
      inner: the transform whose state is sharded.
      mesh: the ``jax.sharding.Mesh`` holding ``axis``.
      axis: the data-parallel mesh axis name. Default ``"data"``.
      gather_updates: whether the updates are constrained to be replicated over
        ``axis`` (True, default: for replicated parameters) or keep the state's layout
        (False: for FSDP parameters sharded over ``axis``).

    Example:
      >>> import numpy as np
      >>> from jax.sharding import Mesh
      >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
      >>> tx = gx.zero1(gx.adam(1e-3), mesh)
      >>> params = {"w": jnp.ones((4, 3))}
      >>> state = tx.init(params)
      >>> updates, state = jax.jit(tx.update)({"w": jnp.ones((4, 3))}, state, params)
      >>> updates["w"].shape
      (4, 3)
    """

    inner: GradientTransformation
    mesh: jax.sharding.Mesh = static_field()
    axis: str = static_field(default="data")
    gather_updates: bool = static_field(default=True, kw_only=True)

    def __post_init__(self):
        check_transform("zero1", "inner", self.inner)
        if not isinstance(self.mesh, jax.sharding.Mesh):
            raise TypeError(f"zero1: mesh must be a jax.sharding.Mesh, got {self.mesh!r}")
        if self.axis not in self.mesh.axis_names:
            raise ValueError(
                f"zero1: axis must be one of the mesh's axis names {self.mesh.axis_names}, "
                f"got {self.axis!r}"
            )
        if not isinstance(self.gather_updates, bool):
            raise TypeError(
                f"zero1: gather_updates must be True or False, got {self.gather_updates!r}"
            )

    # ---- placement --------------------------------------------------------------

    def _spec(self, x: Any) -> Any:
        """``x``'s current spec on this mesh; None when unknown (a tracer on Auto axes);
        replicated for an array that lives elsewhere (one device, another mesh)."""
        if isinstance(x, jax.core.Tracer):
            sharding = _traced_sharding(x)
        else:
            sharding = getattr(x, "sharding", None)
            if not isinstance(sharding, jax.sharding.NamedSharding):
                return jax.sharding.PartitionSpec()
        if isinstance(sharding, jax.sharding.NamedSharding) and sharding.mesh == self.mesh:
            return sharding.spec
        return None if isinstance(x, jax.core.Tracer) else jax.sharding.PartitionSpec()

    def _place(self, x: Any, spec: Any) -> Any:
        sharding = jax.sharding.NamedSharding(self.mesh, spec)
        if isinstance(x, jax.core.Tracer):
            if jax.sharding.AxisType.Explicit in self.mesh.axis_types:
                # Explicit axes: the traced type carries the sharding; change it by reshard.
                return jax.sharding.reshard(x, sharding)
            return jax.lax.with_sharding_constraint(x, sharding)
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        return jax.device_put(x, sharding)

    def _shard(self, tree: PyTree) -> PyTree:
        size = self.mesh.shape[self.axis]

        def one(x: Any) -> Any:
            if not is_param(x) or not getattr(x, "ndim", 0):
                return x
            spec = zero1_spec(x.shape, self._spec(x), self.axis, size)
            return x if spec is None else self._place(x, spec)

        return jax.tree_util.tree_map(one, tree)

    def _gather(self, tree: PyTree) -> PyTree:
        size = self.mesh.shape[self.axis]

        def one(x: Any) -> Any:
            if not is_param(x) or not getattr(x, "ndim", 0):
                return x
            current = self._spec(x)
            if current is None:  # traced, Auto axes: undo the rule's dimension only
                sharded = zero1_spec(x.shape, None, self.axis, size)
                if sharded is None:
                    return x
                spec = [None if e == self.axis else e for e in sharded]
            else:
                entries = list(current)
                if not any(_uses(e, self.axis) for e in entries):
                    return x
                spec = [_drop(e, self.axis) for e in entries]
            return self._place(x, jax.sharding.PartitionSpec(*spec))

        return jax.tree_util.tree_map(one, tree)

    # ---- the transform -----------------------------------------------------------

    def init(self, params):
        return Zero1State(inner_state=self._shard(self.inner.init(params)))

    def update(self, updates, state, params=None, **extra):
        inner_state = self._shard(state.inner_state)
        updates, inner_state = self.inner.update(self._shard(updates), inner_state, params, **extra)
        inner_state = self._shard(inner_state)
        if self.gather_updates:
            updates = self._gather(self._shard(updates))
        return updates, Zero1State(inner_state=inner_state)


def _drop(entry: Any, axis: str) -> Any:
    """A spec entry without ``axis``."""
    if entry == axis:
        return None
    if isinstance(entry, tuple) and axis in entry:
        rest = tuple(e for e in entry if e != axis)
        return rest if len(rest) > 1 else (rest[0] if rest else None)
    return entry
