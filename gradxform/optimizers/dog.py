"""DoG and L-DoG (Ivgi, Hinder & Carmon, 2023): SGD with a distance-over-gradients step."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_params, need_params
from .._leafwise import (
    abs2,
    compute_dtype,
    map_params,
    new_slot,
    safe_increment,
    slot_dtype,
    wider_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._parameter_free import global_dtype, map_with_contributions, scale_leaves

# DoGState is exported by gradxform too; __all__ lists the transforms (the registry test
# reads it as the optimizers this module defines).
__all__ = ["scale_by_dog", "dog", "ldog"]


class DoGState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: steps taken
    # rbar, g2_sum: real (global dtype), shape () (DoG) or (number of optimized leaves,)
    # in leaf order (layer_wise: L-DoG).
    rbar: jax.Array  # max distance from x0 so far: max(r_eps, max_i ||x_i - x0||)
    g2_sum: jax.Array  # G: eps + sum_i ||g_i||^2
    x0: PyTree  # like params: the parameters at the first step (zeros before it)


class scale_by_dog(GradientTransformation):
    """DoG direction (dog-optimizer 1.0.3 ``DoG``; ``LDoG`` with layer_wise), for -lr.

    With x0 the parameters at the first step and norms over the whole tree (over each
    leaf with layer_wise):

      rbar_1 = reps_rel (1 + ||x0||);  rbar_t = max(rbar_{t-1}, ||x_t - x0||)  (t > 1)
      G_t = eps + sum_{i <= t} ||g_i||^2;  u = (rbar_t / sqrt(G_t)) g.

    The alias's ``scale_by_learning_rate`` multiplies by -lr (the paper's c, 1 by
    default). With ``init_eta`` the first step size is init_eta and rbar_1 = 0, as the
    reference, whose first step ignores lr there; here lr still multiplies it.

    x0 is taken from ``params`` at the first step, not at ``init`` (the reference also
    records it at its first step): ``init`` needs only shapes and dtypes and works on
    ``jax.ShapeDtypeStruct`` trees, unlike ``optax.contrib.dog``, whose init stores the
    parameters and their norm.

    Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
    Schedule" (ICML 2023; arXiv:2302.12022), Algorithm 1 (and L-DoG, section 3.3).

    Args:
      reps_rel: > 0, the first distance relative to 1 + ||x0|| (r_eps in the paper).
        Default 1e-6 (dog-optimizer; 1e-4 suggested with batch normalization).
      eps: > 0, added to the sum of squared gradient norms. Default 1e-8 (dog-optimizer).
      init_eta: > 0, the first step size, or None: from reps_rel. Default None
        (dog-optimizer).
      layer_wise: one step size per leaf (L-DoG) instead of one for the tree. Default
        False (DoG).

    Example:
      >>> tx = gx.scale_by_dog(init_eta=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> u, state = tx.update(jnp.array([4.0, -1.0]), state, params)
      >>> u  # init_eta g on the first step
      Array([ 2. , -0.5], dtype=float32)
      >>> u, state = tx.update(jnp.array([4.0, -1.0]), state, params - u)
      >>> u.round(4)  # ||x - x0|| / sqrt(2 ||g||^2 + eps) g
      Array([ 1.4142, -0.3536], dtype=float32)
    """

    reps_rel: Scalar = 1e-6
    eps: Scalar = 1e-8
    init_eta: Scalar | None = None
    layer_wise: bool = static_field(default=False)

    def __post_init__(self):
        owner = "scale_by_dog"
        if self.init_eta is None:
            check_hparam(owner, "reps_rel", self.reps_rel, low=0, low_open=True)
        else:
            check_hparam(owner, "init_eta", self.init_eta, low=0, low_open=True)
        check_hparam(owner, "eps", self.eps, low=0, low_open=True)

    def init(self, params):
        dt = global_dtype(params)
        # One (rbar, G) pair for the tree, or one per optimized leaf (in leaf order).
        n = len(jax.tree_util.tree_leaves(map_params(lambda p: 0, params)))
        shape = (n,) if self.layer_wise else ()
        return DoGState(
            count=zero_count(),
            rbar=jnp.zeros(shape, dt),
            g2_sum=jnp.zeros(shape, dt),
            x0=map_params(lambda p: new_slot(p, slot_dtype(p)), params),
        )

    def update(self, updates, state, params=None, **extra):
        need_params("scale_by_dog", params)
        check_params(updates, params)
        first = state.count == 0
        dt = state.rbar.dtype

        def sums(u, x0_old, p):
            ct = wider_dtype(compute_dtype(u), x0_old.dtype)
            x = jnp.asarray(p).astype(ct)
            x0 = jnp.where(first, x, x0_old.astype(ct))
            # Per-leaf norms: the reference takes the norm of per-tensor norms.
            x_norm = jnp.sqrt(jnp.sum(abs2(x)))
            dist = jnp.sqrt(jnp.sum(abs2(x - x0)))
            g2 = jnp.sum(abs2(u.astype(compute_dtype(u)))).astype(x_norm.dtype)
            return jnp.stack([x_norm, dist, g2]), x0.astype(x0_old.dtype), p

        vectors, (x0, _) = map_with_contributions(sums, updates, state.x0, params)
        if self.layer_wise:
            x_norm, dist, g2 = (
                jnp.stack([v[i].astype(dt) for v in vectors]) if vectors else jnp.zeros([0], dt)
                for i in range(3)
            )
        else:
            x_norm2, dist2, g2 = (jnp.zeros([], dt),) * 3
            for v in vectors:  # summed in leaf order, as the reference's per-tensor terms
                v = v.astype(dt)
                x_norm2, dist2, g2 = x_norm2 + v[0] * v[0], dist2 + v[1] * v[1], g2 + v[2]
            x_norm, dist = jnp.sqrt(x_norm2), jnp.sqrt(dist2)
        # reps_rel is ignored (0) when init_eta is given, as the reference.
        reps = 0.0 if self.init_eta is not None else self.reps_rel
        r_first = jnp.asarray(reps, dt) * (1 + x_norm)
        rbar = jnp.where(first, r_first, jnp.maximum(state.rbar, dist))
        g2_sum = jnp.where(first, g2 + jnp.asarray(self.eps, dt), state.g2_sum + g2)
        eta = rbar / jnp.sqrt(g2_sum)
        if self.init_eta is not None:
            eta = jnp.where(first, jnp.asarray(self.init_eta, dt), eta)
        etas = list(eta) if self.layer_wise else [eta] * len(vectors)
        out = scale_leaves(updates, etas)
        new = DoGState(
            count=safe_increment(state.count),
            rbar=rbar.astype(dt),
            g2_sum=g2_sum.astype(dt),
            x0=x0,
        )
        return out, new


def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    *,
    reps_rel: Scalar = 1e-6,
    eps: Scalar = 1e-8,
    init_eta: Scalar | None = None,
    weight_decay: ScalarOrSchedule | None = None,
):
    """DoG, exactly dog-optimizer 1.0.3's ``DoG`` (one parameter group).

    = chain(add_decayed_weights(wd), scale_by_dog(reps_rel, eps, init_eta),
    scale_by_learning_rate(lr)). The authors recommend iterate averaging with it (for
    example ``gx.ema`` of the parameters, or a polynomial-decay average).

    Args:
      learning_rate: c > 0 in the paper, a number or a schedule. Default 1.0
        (dog-optimizer, which advises against changing it).
      reps_rel: > 0, the first distance relative to 1 + ||x0||. Default 1e-6
        (dog-optimizer; 1e-4 suggested with batch normalization).
      eps: > 0, added to the sum of squared gradient norms. Default 1e-8 (dog-optimizer).
      init_eta: > 0, the first step size (then times lr here; the reference ignores lr
        on that step), or None: from reps_rel. Default None (dog-optimizer).
      weight_decay: L2 coefficient wd >= 0 added to the gradient (wd x), or None: no
        term. Default None (dog-optimizer's 0).

    Example:
      >>> tx = gx.dog()
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = tx.init(params)
      >>> loss = lambda p: jnp.sum((p["w"] - 3.0) ** 2)
      >>> for _ in range(200):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = gx.apply_updates(params, updates)
      >>> bool(loss(params) < 1e-4)
      True
    """
    return named_chain(
        "dog",
        maybe_weight_decay(weight_decay),
        scale_by_dog(reps_rel, eps, init_eta),
        scale_by_learning_rate(learning_rate),
    )


def ldog(
    learning_rate: ScalarOrSchedule = 1.0,
    *,
    reps_rel: Scalar = 1e-6,
    eps: Scalar = 1e-8,
    init_eta: Scalar | None = None,
    weight_decay: ScalarOrSchedule | None = None,
):
    """L-DoG (layer-wise DoG), exactly dog-optimizer 1.0.3's ``LDoG``: one DoG step size
    per leaf.

    = chain(add_decayed_weights(wd), scale_by_dog(reps_rel, eps, init_eta,
    layer_wise=True), scale_by_learning_rate(lr)).

    Args:
      learning_rate: c > 0 in the paper, a number or a schedule. Default 1.0
        (dog-optimizer).
      reps_rel: > 0, each leaf's first distance relative to 1 + ||x0 leaf||. Default
        1e-6 (dog-optimizer).
      eps: > 0, added to each leaf's sum of squared gradient norms. Default 1e-8
        (dog-optimizer).
      init_eta: > 0, the first step size (then times lr), or None: from reps_rel.
        Default None (dog-optimizer).
      weight_decay: L2 coefficient wd >= 0 added to the gradient, or None: no term.
        Default None (dog-optimizer's 0).

    Example:
      >>> tx = gx.ldog()
      >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(5.0)}
      >>> state = tx.init(params)
      >>> loss = lambda p: jnp.sum((p["w"] - 3.0) ** 2) + (p["b"] + 1.0) ** 2
      >>> for _ in range(200):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = gx.apply_updates(params, updates)
      >>> bool(loss(params) < 1e-4)
      True
    """
    return named_chain(
        "ldog",
        maybe_weight_decay(weight_decay),
        scale_by_dog(reps_rel, eps, init_eta, layer_wise=True),
        scale_by_learning_rate(learning_rate),
    )
