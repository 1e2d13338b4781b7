"""NovoGrad (Ginsburg et al., 2019): Adam-like momentum with a per-layer second moment.

The second moment is one scalar per leaf (a layer is a leaf), the moving average of the
leaf's squared gradient norm, so the state is about half of Adam's.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import (
    check_hparam,
    check_params,
    check_tree_structure,
    is_int_array,
    is_none,
    is_param,
    need_params,
    raise_int_update,
    raise_missing_slot,
    raise_shape,
)
from .._leafwise import (
    compute_dtype,
    map_params,
    new_slot,
    safe_increment,
    scalar_like,
    slot_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule, TreeDef
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._layerwise import check_decay, leaf_norm, selected
from ._moments import check_betas

__all__ = ["scale_by_novograd", "novograd"]


class NovogradState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    mu: PyTree  # like params, mu_dtype: first moment of the normalized gradients
    nu: PyTree  # one real scalar per leaf, nu_dtype: average of ||g||^2 over the leaf


class scale_by_novograd(GradientTransformation):
    """NovoGrad's direction (Ginsburg et al., 2019), per leaf (a layer is a leaf).

    v_1 = ||g_1||^2, v_t = b2 v_{t-1} + (1 - b2) ||g_t||^2 (one scalar per leaf);
    d_t = g_t / (sqrt(v_t + eps_root) + eps) + wd p;
    m_1 = d_1, m_t = b1 m_{t-1} + c d_t with c = 1 - b1 if ``grad_averaging`` else 1;
    u = m_t. No bias correction (the paper has none). Optax's ``scale_by_novograd`` and
    pytorch_optimizer's ``NovoGrad`` (coupled decay) compute the same.

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.95
        (pytorch_optimizer's NovoGrad; Optax's is 0.9).
      b2: decay of the per-leaf second moment, in [0, 1). Default 0.98
        (pytorch_optimizer's NovoGrad; Optax's is 0.25).
      eps: > 0, added to the root. Default 1e-8 (pytorch_optimizer and Optax's
        ``scale_by_novograd``; Optax's ``novograd`` uses 1e-6).
      eps_root: >= 0, added inside the root. Default 0 (Optax).
      weight_decay: coupled decay wd >= 0 added to the normalized gradient, a number, or
        None: no term. Default None.
      weight_decay_mask: the leaves decayed, a selector as ``gx.masked`` takes it. Default
        None (all; only with ``weight_decay``).
      grad_averaging: scale d_t by 1 - b1 after the first step. Default False
        (pytorch_optimizer; Optax has no such option).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_novograd()
      >>> g = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([2.0])}
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u["w"]  # g / ||g|| on the first step
      Array([0.6, 0.8], dtype=float32)
      >>> state.nu["w"]  # ||g||^2, one number for the leaf
      Array(25., dtype=float32)
    """

    b1: Scalar = 0.95
    b2: Scalar = 0.98
    eps: Scalar = 1e-8
    eps_root: Scalar = 0.0
    _: KW_ONLY
    weight_decay: Scalar | None = None
    weight_decay_mask: Any = static_field(default=None)
    grad_averaging: bool = static_field(default=False)
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        o = "scale_by_novograd"
        check_betas(o, self.b1, self.b2, self.eps)
        check_hparam(o, "eps_root", self.eps_root, low=0)
        mask = check_decay(o, self.weight_decay, self.weight_decay_mask)
        object.__setattr__(self, "weight_decay_mask", mask)

    def init(self, params):
        def nu(p):
            return jnp.zeros([], slot_dtype(p, self.nu_dtype, real=True))

        return NovogradState(
            count=zero_count(),
            mu=map_params(lambda p: new_slot(p, slot_dtype(p, self.mu_dtype)), params),
            nu=map_params(nu, params),
        )

    def update(self, updates, state, params=None, **extra):
        o = "scale_by_novograd"
        wd = self.weight_decay
        if wd is not None:
            need_params(o, params)
            check_params(updates, params)
        first = state.count == 0
        b1, b2 = self.b1, self.b2

        def f(u, m_old, n_old, p, dec):
            g = u.astype(compute_dtype(u))
            n_prev = n_old.astype(jnp.finfo(g.dtype).dtype)
            n2 = jnp.square(leaf_norm(g))
            # torch's lerp (pytorch_optimizer); v_1 = ||g_1||^2, no warm-up from 0.
            n = jnp.where(first, n2, n_prev + scalar_like(1 - b2, n2) * (n2 - n_prev))
            root = jnp.sqrt(n + scalar_like(self.eps_root, n)) + scalar_like(self.eps, n)
            d = g / root.astype(g.dtype)
            if dec:
                d = d + scalar_like(wd, g) * jnp.asarray(p).astype(g.dtype)
            m_prev = m_old.astype(g.dtype)
            c = scalar_like(1 - b1, g) * d if self.grad_averaging else d
            m = jnp.where(first, d, scalar_like(b1, g) * m_prev + c)
            return m.astype(u.dtype), m.astype(m_old.dtype), n.astype(n_old.dtype)

        decayed = selected(o, self.weight_decay_mask, params) if wd is not None else None
        updates, mu, nu = _map_layers(f, updates, state.mu, state.nu, params, decayed)
        return updates, NovogradState(count=safe_increment(state.count), mu=mu, nu=nu)


def _map_layers(fn, updates, mu, nu, params, decayed):
    """``fn(u, m, n, p, decayed)`` on optimized leaves (p None and decayed False without
    params); others pass through with their slots. ``map_updates`` cannot be used: it
    wants every array slot shaped like its update, and n is one scalar per leaf."""
    for name, s in (("mu", mu), ("nu", nu)):
        check_tree_structure(updates, s, names=("updates", f"state.{name}"), allow_none=True)
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    ms, ns = treedef.flatten_up_to(mu), treedef.flatten_up_to(nu)
    ps = [None] * len(leaves) if params is None else treedef.flatten_up_to(params)
    ds = [False] * len(leaves) if decayed is None else treedef.flatten_up_to(decayed)
    outs: list[list[Any]] = [[], [], []]
    for j, (u, m, n, p, d) in enumerate(zip(leaves, ms, ns, ps, ds)):
        if isinstance(u, (float, complex)):  # a Python-number parameter's update
            u = jnp.asarray(u)
        if is_param(u):
            if m is None or n is None or (d and p is None):
                raise_missing_slot(updates, j)
            if jnp.shape(m) != jnp.shape(u):
                raise_shape(updates, j, u, m)
            res = fn(u, m, n, p, d)
        elif is_int_array(u):
            raise_int_update(updates, j, u)
        else:
            res = (u, m, n)
        for k in range(3):
            outs[k].append(res[k])
    return tuple(treedef.unflatten(o) for o in outs)


def novograd(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.95,
    b2: Scalar = 0.98,
    eps: Scalar = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    decoupled_weight_decay: bool = False,
    grad_averaging: bool = False,
    eps_root: Scalar = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
):
    """NovoGrad (Ginsburg et al., 2019), pytorch_optimizer's ``NovoGrad`` semantics.

    v_t = b2 v + (1 - b2) ||g||^2 per leaf (v_1 = ||g_1||^2);
    m_t = b1 m + g / (sqrt(v_t) + eps) + wd p (m_1 without b1 m);  p <- p - lr_t m_t.
    = chain(scale_by_novograd(b1, b2, eps, eps_root, wd), scale_by_learning_rate(lr));
    with ``decoupled_weight_decay`` the decay leaves the moment and is added after it:
    chain(scale_by_novograd(...), add_decayed_weights(wd), scale_by_learning_rate(lr)),
    p <- p - lr_t (m_t + wd p). Arguments after ``eps`` are keyword-only (Optax's fifth
    positional argument is ``eps_root``).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (pytorch_optimizer; Optax has none).
      b1: decay of the first moment, in [0, 1). Default 0.95
        (pytorch_optimizer's NovoGrad; Optax's is 0.9).
      b2: decay of the per-leaf second moment, in [0, 1). Default 0.98
        (pytorch_optimizer's NovoGrad; Optax's is 0.25).
      eps: > 0, added to the root. Default 1e-8 (pytorch_optimizer; Optax's is 1e-6).
      weight_decay: decay coefficient wd >= 0, or None: no term. A number (coupled: in
        the moment), or with ``decoupled_weight_decay`` also a schedule. Default None
        (pytorch_optimizer's and Optax's 0).
      weight_decay_mask: the leaves decayed, a selector as ``gx.masked`` takes it. Default
        None (all).
      decoupled_weight_decay: add wd p after the moment instead of inside it
        (pytorch_optimizer's ``weight_decouple=True``). Default False (Ginsburg et al.,
        2019; pytorch_optimizer; Optax).
      grad_averaging: scale new normalized gradients by 1 - b1 after the first step.
        Default False (pytorch_optimizer).
      eps_root: >= 0, added inside the root. Default 0 (Optax).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v. Default None: the parameter dtype, at least float32.

    Example:
      >>> tx = gx.novograd(learning_rate=0.5)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
      >>> updates["w"]  # -lr g / ||g|| on the first step
      Array([-0.3, -0.4], dtype=float32)
    """
    # A schedule is accepted decoupled only (add_decayed_weights counts steps); coupled,
    # scale_by_novograd refuses it with a TypeError naming weight_decay.
    coupled = cast("Scalar | None", None if decoupled_weight_decay else weight_decay)
    return named_chain(
        "novograd",
        scale_by_novograd(
            b1,
            b2,
            eps,
            eps_root,
            weight_decay=coupled,
            weight_decay_mask=None if decoupled_weight_decay else weight_decay_mask,
            grad_averaging=grad_averaging,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        maybe_weight_decay(weight_decay, weight_decay_mask) if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
