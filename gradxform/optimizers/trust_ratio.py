"""Layer-wise trust ratios for large-batch training: ``scale_by_trust_ratio``, LAMB, LARS.

A *layer* is a leaf of the parameter tree: each leaf's update is rescaled so that its
norm is a fixed fraction of the leaf's own norm, ``u <- tc ||p|| / ||u|| * u``. Leaves
that should keep their plain update (biases, normalization scales: the usual practice)
are left out with a selector, ``trust_ratio_mask`` (the language of ``gx.masked``).

Because a selected leaf moves by lr * tc * ||p|| whatever the gradient, LAMB and LARS
with a constant learning rate settle in a neighbourhood of the minimum of that size: they
are meant to run under a decaying schedule. A scalar leaf under a trust ratio moves by
lr |p| and so never changes sign; leave scalars out of the mask.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any

import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam, check_params, concrete_number, need_params
from .._leafwise import compute_dtype, map_updates, scalar_like
from .._module import static_field
from .._typing import Scalar, ScalarOrSchedule
from ..base import GradientTransformation, empty_state, named_chain
from ..layout import ParamLayout
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ..wrappers.selectors import as_selector
from ._layerwise import check_decay, leaf_norm, selected
from .adam import scale_by_adam
from .sgd import scale_by_momentum

__all__ = ["scale_by_trust_ratio", "lamb", "lars"]


class scale_by_trust_ratio(GradientTransformation):
    """Per-leaf trust ratio: u <- tc ||p|| / (||u|| + eps) * u, on the selected leaves.

    With n_p = min(max(||p||, min_norm), max_param_norm) and n_u = max(||u||, min_norm)
    (norms over the whole leaf: a layer is a leaf), the ratio is
    r = tc n_p / (n_u + wd n_p + eps), or 1 where n_p = 0 or n_u + wd n_p = 0 (a zero
    parameter or update keeps its plain update: Optax's and pytorch_optimizer's rule).
    ``weight_decay`` is LARS's form (You et al., 2017): u <- r (u + wd p), the decay
    inside the ratio's denominator as ||g|| + wd ||p|| (Optax's ``lars`` adds the decay
    before the ratio instead, whose denominator is ||g + wd p||). Unselected leaves get
    u (+ wd p where decayed) unscaled. Norms are computed in at least float32 without
    overflow (scaled by max |x| before squaring).

    Args:
      min_norm: >= 0, lower bound of both norms. Default 0 (Optax).
      trust_coefficient: tc >= 0. Default 1 (LAMB, You et al., 2020; LARS uses 1e-3).
      eps: >= 0, added to the denominator. Default 0 (Optax).
      max_param_norm: > 0, upper bound of ||p|| (the clip of You et al., 2020's phi;
        pytorch_optimizer's Lamb uses 10), or None: no bound. Default None (Optax).
      weight_decay: LARS's decay coefficient wd >= 0, a number, or None: no term.
        Default None.
      weight_decay_mask: the leaves decayed, a selector as ``gx.masked`` takes it. Default
        None (all; only with ``weight_decay``).
      mask: the leaves that get the ratio, a selector as ``gx.masked`` takes it (a tree
        of bools, a pattern, ``gx.match`` or ``gx.where``). Default None (all).
      layout: the ``gx.ParamLayout`` of flat params: the ratio is then taken per original
        leaf inside each flat buffer (norms through the layout's segment ids), not per
        buffer; masks select buffers (build the layout with ``labels=``). Default None
        (params are the tree itself).

    Example:
      >>> tx = gx.scale_by_trust_ratio(mask="w")
      >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
      >>> grads = {"w": jnp.array([0.0, 0.5]), "b": jnp.array([0.5])}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> updates["w"]  # ||p|| / ||g|| * g = 5 / 0.5 * g
      Array([0., 5.], dtype=float32)
      >>> updates["b"]  # left out by the mask
      Array([0.5], dtype=float32)
    """

    min_norm: Scalar = 0.0
    _: KW_ONLY
    trust_coefficient: Scalar = 1.0
    eps: Scalar = 0.0
    max_param_norm: Scalar | None = None
    weight_decay: Scalar | None = None
    weight_decay_mask: Any = static_field(default=None)
    mask: Any = static_field(default=None)
    layout: ParamLayout | None = static_field(default=None)

    def __post_init__(self):
        o = "scale_by_trust_ratio"
        if self.layout is not None and not isinstance(self.layout, ParamLayout):
            raise TypeError(f"{o}: layout must be a gx.ParamLayout or None, got {self.layout!r}")
        check_hparam(o, "min_norm", self.min_norm, low=0)
        check_hparam(o, "trust_coefficient", self.trust_coefficient, low=0)
        check_hparam(o, "eps", self.eps, low=0)
        if self.max_param_norm is not None:
            check_hparam(o, "max_param_norm", self.max_param_norm, low=0, low_open=True)
            hi, lo = concrete_number(self.max_param_norm), concrete_number(self.min_norm)
            if hi is not None and lo is not None and hi < lo:
                raise ValueError(f"{o}: max_param_norm must be >= min_norm, got {hi!r} < {lo!r}")
        mask = check_decay(o, self.weight_decay, self.weight_decay_mask)
        object.__setattr__(self, "weight_decay_mask", mask)
        if self.mask is not None:
            object.__setattr__(self, "mask", as_selector(o, self.mask, "mask"))

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        o = "scale_by_trust_ratio"
        need_params(o, params)
        check_params(updates, params)
        chosen = selected(o, self.mask, params)
        wd = self.weight_decay
        decayed = selected(o, self.weight_decay_mask, params) if wd is not None else chosen
        layout = self.layout
        # Per-leaf norms of flat buffers, broadcast back to their elements.
        p_norms = u_norms = params  # unused without a layout
        if layout is not None:
            p_norms = layout.per_element(layout.leaf_norms(params))
            u_norms = layout.per_element(layout.leaf_norms(updates))

        def f(u, p, sel, dec, p_norm, u_norm):
            dt = compute_dtype(u)
            g = u.astype(dt)
            pc = jnp.asarray(p).astype(dt)
            dec = dec and wd is not None
            if not sel:
                out = g + scalar_like(wd, g) * pc if dec else g
                return (out.astype(u.dtype),)
            if layout is None:
                pn, un = leaf_norm(pc), leaf_norm(g)
            else:
                real = jnp.finfo(dt).dtype
                pn, un = p_norm.astype(real), u_norm.astype(real)
            lo = scalar_like(self.min_norm, pn)
            pn, un = jnp.maximum(pn, lo), jnp.maximum(un, lo)
            if self.max_param_norm is not None:
                pn = jnp.minimum(pn, scalar_like(self.max_param_norm, pn))
            denom = un + scalar_like(wd, pn) * pn if dec else un
            ratio = (
                scalar_like(self.trust_coefficient, pn) * pn / (denom + scalar_like(self.eps, pn))
            )
            ratio = jnp.where((pn == 0) | (denom == 0), jnp.ones([], pn.dtype), ratio)
            if dec:
                g = g + scalar_like(wd, g) * pc
            return ((g * ratio.astype(g.dtype)).astype(u.dtype),)

        return map_updates(f, updates, params, chosen, decayed, p_norms, u_norms)[0], state


def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-6,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    trust_ratio_mask: Any = None,
    bias_correction: bool = True,
    eps_root: Scalar = 0.0,
    trust_ratio_eps: Scalar = 0.0,
    max_param_norm: Scalar | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    layout: ParamLayout | None = None,
):
    """LAMB (You et al., 2020): Adam's direction plus decay, rescaled per leaf by ||p|| / ||.||.

    r_t = m_hat / (sqrt(v_hat) + eps) + wd p;  p <- p - lr_t ||p|| / ||r_t|| * r_t.
    = chain(scale_by_adam(b1, b2, eps, eps_root, bias_correction), add_decayed_weights(wd,
    weight_decay_mask), scale_by_trust_ratio(eps=trust_ratio_eps, max_param_norm,
    mask=trust_ratio_mask), scale_by_learning_rate(lr)): Optax's ``lamb`` at the defaults.
    pytorch_optimizer's ``Lamb(weight_decouple=False, adam_debias=True)`` is
    ``bias_correction=False, trust_ratio_eps=eps, max_param_norm=10``. Arguments after
    ``eps`` are keyword-only (Optax's fifth positional argument is ``eps_root``).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (pytorch_optimizer's Lamb; Optax has none).
      b1: decay of the first moment, in [0, 1). Default 0.9 (You et al., 2020).
      b2: decay of the second moment, in [0, 1). Default 0.999 (You et al., 2020).
      eps: > 0, added to the root in Adam's denominator. Default 1e-6 (You et al., 2020;
        Optax).
      weight_decay: decay coefficient wd >= 0 added before the ratio, a number or a
        schedule, or None: no term. Default None (Optax's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      trust_ratio_mask: the leaves rescaled, a selector as ``gx.masked`` takes it; the
        others take Adam's step. Default None (all, as Optax).
      bias_correction: divide the moments by 1 - b^t (You et al., 2020, Algorithm 2).
        Default True (Optax; pytorch_optimizer's Lamb has none for v).
      eps_root: >= 0, added inside the root. Default 0 (Optax).
      trust_ratio_eps: >= 0, added to ||r_t|| in the ratio. Default 0 (Optax;
        pytorch_optimizer adds its eps).
      max_param_norm: upper bound of ||p|| in the ratio, or None. Default None (Optax;
        pytorch_optimizer uses 10).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v. Default None: the parameter dtype, at least float32.
      layout: the ``gx.ParamLayout`` of flat params, for per-leaf ratios on flat buffers
        (see ``scale_by_trust_ratio``). Default None.

    Example:
      >>> tx = gx.lamb(learning_rate=0.1)
      >>> params = {"w": jnp.array([3.0, -4.0])}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([1.0, 1.0])}, state, params)
      >>> updates["w"].round(4)  # -lr ||p|| g / ||g||: a step of lr ||p|| = 0.5
      Array([-0.3536, -0.3536], dtype=float32)
    """
    return named_chain(
        "lamb",
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            bias_correction=bias_correction,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_trust_ratio(
            eps=trust_ratio_eps,
            max_param_norm=max_param_norm,
            mask=trust_ratio_mask,
            layout=layout,
        ),
        scale_by_learning_rate(learning_rate),
    )


def lars(
    learning_rate: ScalarOrSchedule,
    *,
    weight_decay: Scalar | None = None,
    momentum: ScalarOrSchedule | None = 0.9,
    trust_coefficient: Scalar = 1e-3,
    eps: Scalar = 0.0,
    nesterov: bool = False,
    weight_decay_mask: Any = None,
    trust_ratio_mask: Any = None,
    layout: ParamLayout | None = None,
):
    """LARS (You et al., 2017): SGD with momentum on layer-wise rescaled gradients.

    r = tc ||p|| / (||g|| + wd ||p|| + eps);  v_t = mu v_{t-1} + r (g + wd p);
    p <- p - lr_t v_t (v_t -> r (g + wd p) + mu v_t with nesterov).
    = chain(scale_by_trust_ratio(trust_coefficient, eps, weight_decay, masks),
            scale_by_momentum(mu, nesterov), scale_by_learning_rate(lr)): the paper's and
    pytorch_optimizer's ``LARS`` (which rescales and decays only leaves with ndim > 1:
    give both masks ``gx.where(lambda path, p: p.ndim > 1)``). Optax's ``lars`` divides
    by ||g + wd p|| instead, and applies lr before the momentum (the same trajectory at
    a constant lr). Every argument after ``learning_rate`` is keyword-only.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. No default (Optax).
      weight_decay: decay coefficient wd >= 0 (inside the ratio, see above), a number, or
        None: no term. Default None (Optax's and pytorch_optimizer's 0).
      momentum: mu in [0, 1), a number or a schedule, or None: no buffer. Default 0.9
        (You et al., 2017; Optax; pytorch_optimizer).
      trust_coefficient: tc >= 0. Default 1e-3 (You et al., 2017; Optax;
        pytorch_optimizer).
      eps: >= 0, added to the ratio's denominator. Default 0 (Optax).
      nesterov: Nesterov momentum; needs momentum. Default False.
      weight_decay_mask: the leaves decayed, a selector as ``gx.masked`` takes it. Default
        None (all, as Optax).
      trust_ratio_mask: the leaves rescaled, a selector as ``gx.masked`` takes it. Default
        None (all, as Optax).
      layout: the ``gx.ParamLayout`` of flat params, for per-leaf ratios on flat buffers
        (see ``scale_by_trust_ratio``). Default None.

    Example:
      >>> tx = gx.lars(learning_rate=1.0, trust_coefficient=0.1, momentum=None)
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> updates, _ = tx.update({"w": jnp.array([0.0, 2.0])}, tx.init(params), params)
      >>> updates["w"]  # -lr tc ||p|| g / ||g||
      Array([-0. , -0.5], dtype=float32)
    """
    if nesterov and momentum is None:
        raise ValueError("lars: nesterov=True requires momentum")
    return named_chain(
        "lars",
        scale_by_trust_ratio(
            trust_coefficient=trust_coefficient,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mask=weight_decay_mask,
            mask=trust_ratio_mask,
            layout=layout,
        ),
        None if momentum is None else scale_by_momentum(momentum, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )
