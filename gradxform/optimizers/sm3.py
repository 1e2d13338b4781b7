"""SM3 (Anil et al., 2019): Adagrad with one accumulator per row, column, ... of each
parameter (a cover of its entries) instead of one per entry: memory-lean."""

from __future__ import annotations

import functools
from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import (
    check_hparam,
    concrete_number,
    describe,
    is_int_array,
    is_none,
    is_param,
    leaf_path,
    raise_int_update,
)
from .._leafwise import (
    abs2,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    per_leaf,
    scalar_like,
    slot_dtype,
)
from .._typing import PyTree, Scalar, ScalarOrSchedule, TreeDef
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate

__all__ = ["scale_by_sm3", "sm3"]


class Sm3State(NamedTuple):
    # Per parameter of rank k >= 1: a tuple of k real arrays, the i-th of shape
    # [1]*i + [n_i] + [1]*(k-1-i) (the max of nu over every axis but i); rank 0: a
    # 1-tuple of a scalar. None for leaves that are not optimized.
    accumulators: PyTree
    momentum_buffer: PyTree  # like params when momentum is not None, else None


def _accumulator_slot(p: Any, axis: int | None, dtype: Any) -> jax.Array:
    """A zero accumulator for axis ``axis`` of ``p`` (None: p is a scalar), sharded like
    p along that axis where p's sharding is a known NamedSharding."""
    shape = tuple(jnp.shape(p))
    if axis is None:
        return new_slot(p, dtype)
    acc_shape = tuple(n if i == axis else 1 for i, n in enumerate(shape))
    sharding = getattr(p, "sharding", None)
    if isinstance(p, jax.core.Tracer) or not isinstance(sharding, jax.sharding.NamedSharding):
        # Unknown or unnamed sharding: an unsharded slot (it is 1/n_other of p's size).
        return new_slot(jax.ShapeDtypeStruct(acc_shape, dtype), dtype)
    spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
    keep = jax.sharding.PartitionSpec(*(s if i == axis else None for i, s in enumerate(spec)))
    sds = jax.ShapeDtypeStruct(
        acc_shape, dtype, sharding=jax.sharding.NamedSharding(sharding.mesh, keep)
    )
    return new_slot(sds, dtype)


class scale_by_sm3(GradientTransformation):
    """SM3-II direction, pytorch_optimizer 4.1.0 ``SM3`` semantics (dense parameters).

    Per parameter of rank k, accumulators a_1..a_k (a_i indexed by axis i):
    nu = min_i a_i (broadcast) + |g|^2, or with ``beta``: beta min_i a_i + (1 - beta)|g|^2;
    a_i = max of nu over every axis but i (with ``beta``: max(a_i, that));
    u = g / sqrt(nu + eps); with ``momentum``: m = momentum m + (1 - momentum) u, u = m.
    A vector (rank 1) or a scalar gets Adagrad. The accumulators take sum(shape)
    numbers instead of prod(shape) (Anil et al., 2019, SM3-II).

    Args:
      momentum: decay of the EMA of the update, in [0, 1), or None: no EMA (no slot).
        Default None (pytorch_optimizer's momentum=0).
      beta: decay of the second-moment EMA, in (0, 1), or None: sum of squares, as the
        paper. Default None (pytorch_optimizer's beta=0; its beta > 0 is this EMA).
      eps: > 0, added to nu under the root. Default 1e-30 (pytorch_optimizer).

    Example:
      >>> tx = gx.scale_by_sm3()
      >>> g = jnp.array([[1.0, 2.0], [3.0, 4.0]])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> state.accumulators  # row maxima and column maxima of g^2
      (Array([[ 4.],
             [16.]], dtype=float32), Array([[ 9., 16.]], dtype=float32))
      >>> u  # the first step is sign(g), as Adagrad's
      Array([[1., 1.],
             [1., 1.]], dtype=float32)
    """

    _: KW_ONLY
    momentum: Scalar | None = None
    beta: Scalar | None = None
    eps: Scalar = 1e-30

    def __post_init__(self):
        owner = "scale_by_sm3"
        if self.momentum is not None:
            check_hparam(owner, "momentum", self.momentum, low=0, high=1, high_open=True)
        if self.beta is not None:
            if concrete_number(self.beta) == 0:
                # pytorch_optimizer's beta=0 is the sum of squares, not the beta -> 0 EMA.
                raise ValueError(
                    f"{owner}: beta must be a finite number in (0, 1) or None (the sum of "
                    f"squares, pytorch_optimizer's beta=0), got {self.beta!r}"
                )
            check_hparam(owner, "beta", self.beta, low=0, high=1, high_open=True)
        check_hparam(owner, "eps", self.eps, low=0, low_open=True)

    def init(self, params):
        def accumulators(p):
            dtype = slot_dtype(p, real=True)
            rank = len(jnp.shape(p))
            if rank == 0:
                return (_accumulator_slot(p, None, dtype),)
            return tuple(_accumulator_slot(p, i, dtype) for i in range(rank))

        accs = map_params(accumulators, params)
        mom = None
        if self.momentum is not None:
            mom = map_params(lambda p: new_slot(p, slot_dtype(p)), params)
        return Sm3State(accumulators=accs, momentum_buffer=mom)

    def update(self, updates, state, params=None, **extra):
        treedef: TreeDef
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
        try:
            acc_leaves = treedef.flatten_up_to(state.accumulators)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"scale_by_sm3: the state's accumulators do not match the updates' tree "
                f"(was init called with other params?): {e}"
            ) from None
        fn = per_leaf(functools.partial(_sm3_leaf, beta=self.beta, eps=self.eps), leaves)
        outs, new_accs = [], []
        for j, (u, accs) in enumerate(zip(leaves, acc_leaves)):
            if isinstance(u, (float, complex)):  # a Python-number parameter's update
                u = jnp.asarray(u)
            if is_int_array(u):
                raise_int_update(updates, j, u)
            if not is_param(u):
                outs.append(u)
                new_accs.append(accs)
                continue
            shapes = [tuple(a.shape) for a in accs] if isinstance(accs, tuple) else None
            ok = shapes == (
                [()] if u.ndim == 0 else [_acc_shape(u.shape, i) for i in range(u.ndim)]
            )
            if not ok:
                raise ValueError(
                    f"scale_by_sm3: updates leaf at {leaf_path(updates, j)} is "
                    f"{describe(u)} but its accumulators are {describe(accs)}"
                    f"{'' if shapes is None else ' of shapes ' + str(shapes)}: was init "
                    "called with these params?"
                )
            out, acc = fn(u, *accs)
            outs.append(out)
            new_accs.append(tuple(acc))
        updates = treedef.unflatten(outs)
        accumulators = treedef.unflatten(new_accs)
        mom = state.momentum_buffer
        if self.momentum is not None:
            w = 1 - self.momentum

            def ema(u, m_old):
                x = u.astype(compute_dtype(u))
                m = m_old.astype(x.dtype)
                m = m + scalar_like(w, x) * (x - m)  # torch's lerp
                return m.astype(u.dtype), m.astype(m_old.dtype)

            updates, mom = map_updates(ema, updates, mom, n_out=2)
        return updates, Sm3State(accumulators=accumulators, momentum_buffer=mom)


def _acc_shape(shape: tuple, axis: int) -> tuple:
    return tuple(n if i == axis else 1 for i, n in enumerate(shape))


def _sm3_leaf(u, *accs, beta, eps):
    g = u.astype(compute_dtype(u))
    g2 = abs2(g)
    nu = functools.reduce(jnp.minimum, [a.astype(g2.dtype) for a in accs])
    if beta is None:
        nu = nu + g2
    else:
        nu = scalar_like(beta, g2) * nu + scalar_like(1 - beta, g2) * g2
    nu = jnp.broadcast_to(nu, g2.shape)
    new = []
    for i, a in enumerate(accs):
        axes = tuple(k for k in range(g2.ndim) if k != i)
        # nu >= 0: the initial 0 changes no maximum, and gives an empty axis one.
        m = jnp.max(nu, axis=axes, keepdims=True, initial=0.0) if axes else nu
        if beta is not None:
            m = jnp.maximum(a.astype(m.dtype), m)
        new.append(m.astype(a.dtype))
    out = g * jax.lax.rsqrt(nu + scalar_like(eps, g2)).astype(g.dtype)
    return out.astype(u.dtype), new


def sm3(
    learning_rate: ScalarOrSchedule = 0.1,
    momentum: Scalar | None = None,
    *,
    beta: Scalar | None = None,
    eps: Scalar = 1e-30,
):
    """SM3 (Anil et al., 2019), as pytorch_optimizer 4.1.0's ``SM3`` (dense parameters).

    p <- p - lr_t u, u as ``scale_by_sm3`` (a matrix keeps one accumulator per row and
    one per column).
    = chain(scale_by_sm3(momentum=..., beta=..., eps=...), scale_by_learning_rate(lr)).
    ``momentum`` sits where ``optax.sm3`` has it (Optax's default is 0.9).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 0.1
        (pytorch_optimizer).
      momentum: decay of the EMA of the update, in [0, 1), or None: none. Default None
        (pytorch_optimizer's 0).
      beta: decay of the second-moment EMA, in (0, 1), or None: sum of squares. Default
        None (pytorch_optimizer's 0).
      eps: > 0, added under the root. Default 1e-30 (pytorch_optimizer).

    Example:
      >>> tx = gx.sm3(learning_rate=0.1)
      >>> params = jnp.zeros((2, 2))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([[1.0, -2.0], [3.0, 4.0]]), state, params)
      >>> updates  # -lr sign(g) on the first step
      Array([[-0.1,  0.1],
             [-0.1, -0.1]], dtype=float32)
    """
    return named_chain(
        "sm3",
        scale_by_sm3(momentum=momentum, beta=beta, eps=eps),
        scale_by_learning_rate(learning_rate),
    )
