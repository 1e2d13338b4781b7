"""Muon (Jordan et al., 2024): momentum orthogonalised by a Newton-Schulz iteration."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import (
    check_dtype_option,
    check_hparam,
    check_int,
    check_transform,
    concrete_number,
    is_none,
    is_param,
)
from .._leafwise import (
    as_int,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    scalar_like,
    slot_dtype,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, chain, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ..wrappers.masking import partition
from ..wrappers.selectors import where
from .adam import adamw as _adamw

__all__ = ["scale_by_muon", "muon"]

# Keller Jordan's quintic (https://kellerjordan.github.io/posts/muon/), torch's defaults.
NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)
_ADJUST = (None, "original", "match_rms_adamw")


class MuonState(NamedTuple):
    mu: PyTree  # like params, at least float32: the momentum buffer (an EMA of gradients)


def _newton_schulz(
    g: jax.Array,
    ns_coefficients: tuple[Any, Any, Any] = NS_COEFFICIENTS,
    ns_steps: int = 5,
    eps: Any = 1e-7,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    """The approximate orthogonal factor of a matrix: torch.optim.Muon's iteration.

    X = G / max(||G||_F, eps) (G transposed first if it has more rows than columns), then
    ``ns_steps`` times: A = X X^H;  X <- a X + (b A + c A A) X. Complex matrices use the
    conjugate transpose. Runs in ``dtype`` (default: G's dtype, at least float32; torch
    runs it in bfloat16) and returns that dtype.

    Args:
      g: a 2-D array. No default.
      ns_coefficients: (a, b, c). Default (3.4445, -4.775, 2.0315) (Jordan et al., 2024;
        torch.optim.Muon).
      ns_steps: number of iterations, an int >= 0. Default 5 (torch.optim.Muon).
      eps: floor of the norm that G is divided by, > 0. Default 1e-7 (torch.optim.Muon).
      dtype: the dtype the iteration runs in. Default None: G's, at least float32.

    """
    if g.ndim != 2:
        raise ValueError(f"newton_schulz: expected a 2-D array, got shape {g.shape}")
    a, b, c = ns_coefficients
    dt = compute_dtype(g) if dtype is None else jnp.dtype(dtype)
    # Each torch op (norm, div, addmm) computes in at least float32 and rounds its result
    # to the iteration's dtype once: the same here (no-op casts unless dtype is narrow).
    work = compute_dtype(jnp.zeros((), dt))
    x = g.astype(dt)
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    hi = jax.lax.Precision.HIGHEST

    def mm(p, q):
        return jnp.matmul(p, q, precision=hi, preferred_element_type=work)

    def k(v):  # a coefficient in the working dtype
        return scalar_like(v, jnp.zeros((), work))

    norm = jnp.linalg.norm(x.astype(work)).astype(jnp.finfo(dt).dtype)  # Frobenius, real
    norm = jnp.maximum(norm, scalar_like(eps, norm).astype(norm.dtype))
    x = (x.astype(work) / norm.astype(work)).astype(dt)

    def step(_, x):
        gram = mm(x, jnp.conj(x).T).astype(dt)
        poly = (k(b) * gram.astype(work) + k(c) * mm(gram, gram)).astype(dt)
        return (k(a) * x.astype(work) + mm(poly, x)).astype(dt)

    # A loop, not unrolled: ns_steps may be traced (it is a number, like the others).
    x = jax.lax.fori_loop(0, as_int(ns_steps), step, x)
    return x.T if tall else x


def _adjust_ratio(adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """torch.optim.Muon's learning-rate factor for a (rows, cols) matrix."""
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


class scale_by_muon(GradientTransformation):
    """Muon's direction: the orthogonalised (Nesterov) momentum of each matrix, torch's.

    B <- B + (1 - mu)(g - B);  M = g + mu (B - g) (nesterov) or B;
    u = r(shape) NS(M), with NS = the iteration below and r the learning-rate adjustment of
    ``adjust_lr_fn``: None / "original": sqrt(max(1, rows / cols)) (Jordan et al., 2024);
    "match_rms_adamw": 0.2 sqrt(max(rows, cols)) (Liu et al., 2025, "Muon is scalable
    for LLM training"). Every leaf must be a matrix, or have a declared 2-D view:
    ``reshape(shape) -> (rows, cols)`` is applied to the leaves that are not 2-D (a
    conv kernel (h, w, in, out): ``lambda s: (math.prod(s[:-1]), s[-1])``), whose
    (rows, cols) also set r. Without it such a leaf is refused, naming its path: route
    biases and norms elsewhere (``muon(..., adamw=...)``). The iteration runs in at least
    float32 (``ns_dtype``; torch.optim.Muon runs it in bfloat16). Keyword-only: Optax's
    ``contrib.scale_by_muon`` orders its arguments differently.

    Args:
      momentum: mu in [0, 1). Default 0.95 (torch.optim.Muon).
      nesterov: orthogonalise g + mu (B - g) instead of B. Default True (torch.optim.Muon).
      ns_coefficients: (a, b, c) of the quintic iteration. Default (3.4445, -4.775,
        2.0315) (Jordan et al., 2024; torch.optim.Muon).
      eps: floor of the norm the momentum is divided by, > 0. Default 1e-7
        (torch.optim.Muon).
      ns_steps: Newton-Schulz iterations, an int in [0, 100). Default 5 (torch.optim.Muon).
      adjust_lr_fn: None, "original" or "match_rms_adamw" (see above). Default None
        (torch.optim.Muon's "original").
      reshape: None, or a function shape -> (rows, cols) giving the 2-D view of each
        leaf that is not 2-D. Default None: such leaves are refused.
      ns_dtype: dtype of the iteration. Default None: the parameter's, at least float32
        (jnp.bfloat16 is torch's choice).
      mu_dtype: storage dtype of B. Default None: the parameter dtype, at least float32.

    Example:
      >>> tx = gx.scale_by_muon(nesterov=False)
      >>> state = tx.init(jnp.zeros((2, 2)))
      >>> u, state = tx.update(jnp.array([[2.0, 0.0], [0.0, 0.0]]), state)
      >>> u.round(2)  # NS(B) of a rank-one B: singular value 0.7 (NS lands in [0.7, 1.2])
      Array([[0.7, 0. ],
             [0. , 0. ]], dtype=float32)
    """

    _: KW_ONLY
    momentum: Scalar = 0.95
    nesterov: bool = static_field(default=True)
    ns_coefficients: tuple[Any, Any, Any] = NS_COEFFICIENTS
    eps: Scalar = 1e-7
    ns_steps: int = 5
    adjust_lr_fn: str | None = static_field(default=None)
    reshape: Callable[[tuple[int, ...]], tuple[int, int]] | None = static_field(default=None)
    ns_dtype: DTypeLike | None = static_field(default=None)
    mu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        owner = "scale_by_muon"
        check_hparam(owner, "momentum", self.momentum, low=0, high=1, high_open=True)
        check_hparam(owner, "eps", self.eps, low=0, low_open=True)
        coeffs = self.ns_coefficients
        if not isinstance(coeffs, (tuple, list)) or len(coeffs) != 3:
            raise ValueError(f"{owner}: ns_coefficients must be a tuple (a, b, c), got {coeffs!r}")
        for name, value in zip("abc", coeffs):
            check_hparam(owner, f"ns_coefficients[{name}]", value)
        object.__setattr__(self, "ns_coefficients", tuple(coeffs))
        check_int(owner, "ns_steps", self.ns_steps, low=0)
        steps = concrete_number(self.ns_steps)
        if steps is not None and steps >= 100:
            raise ValueError(
                f"{owner}: ns_steps must be < 100 (torch's bound), got {self.ns_steps}"
            )
        if self.adjust_lr_fn not in _ADJUST:
            raise ValueError(
                f"{owner}: adjust_lr_fn must be one of {_ADJUST}, got {self.adjust_lr_fn!r}"
            )
        if self.reshape is not None and not callable(self.reshape):
            raise TypeError(f"{owner}: reshape must be None or a function shape -> (rows, cols)")
        check_dtype_option(owner, "ns_dtype", self.ns_dtype)
        check_dtype_option(owner, "mu_dtype", self.mu_dtype)

    def _view(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """The 2-D view of a leaf of this shape; None if it has none (not 2-D, no reshape)."""
        if len(shape) == 2:
            return (int(shape[0]), int(shape[1]))
        if self.reshape is None:
            return None
        return tuple(int(d) for d in self.reshape(tuple(shape)))  # type: ignore[return-value]

    def _check_views(self, tree: PyTree) -> None:
        """Raise a ValueError naming the first optimized leaf with no valid 2-D view."""
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)[0]:
            if not is_param(leaf):
                continue
            shape = tuple(jnp.shape(leaf))
            view = self._view(shape)
            at = jax.tree_util.keystr(path) or "<root>"
            if view is None:
                raise ValueError(
                    f"scale_by_muon: the leaf at {at} has shape {shape}; Muon orthogonalises "
                    "matrices only. Give reshape= a function shape -> (rows, cols) for it, or "
                    "route it to another optimizer (muon(..., adamw=...))"
                )
            if len(view) != 2 or math.prod(view) != math.prod(shape):
                raise ValueError(
                    f"scale_by_muon: reshape({shape}) for the leaf at {at} returned {view}, "
                    "not a (rows, cols) pair of the same size"
                )

    def init(self, params):
        self._check_views(params)
        return MuonState(mu=map_params(lambda p: new_slot(p, slot_dtype(p, self.mu_dtype)), params))

    def update(self, updates, state, params=None, **extra):
        self._check_views(updates)
        momentum = self.momentum
        coeffs = self.ns_coefficients

        def f(u, b_old):
            if u.size == 0:  # an empty matrix has no direction (and rows / 0 columns)
                return u, b_old
            g = u.astype(compute_dtype(u))
            view = self._view(g.shape)
            assert view is not None
            buf = b_old.astype(g.dtype)
            mu = scalar_like(momentum, g)
            buf = buf + scalar_like(1 - momentum, g) * (g - buf)  # torch's lerp, weight < 0.5
            if self.nesterov:
                # torch's grad.lerp(buf, mu): its formula switches at weight 0.5
                d = buf - g
                m = jnp.where(mu < 0.5, g + mu * d, buf - d * scalar_like(1 - momentum, g))
            else:
                m = buf
            rows, cols = view  # checked by _check_views
            o = _newton_schulz(
                m.reshape(rows, cols), coeffs, self.ns_steps, self.eps, self.ns_dtype
            )
            o = o.astype(g.dtype).reshape(g.shape)
            out = o * scalar_like(_adjust_ratio(self.adjust_lr_fn, rows, cols), g)
            return out.astype(u.dtype), buf.astype(b_old.dtype)

        updates, mu = map_updates(f, updates, state.mu, n_out=2)
        return updates, MuonState(mu=mu)


def _matrices(path: tuple, leaf: Any) -> str:
    return "muon" if leaf.ndim == 2 else "adamw"


def _matrices_and_nd(path: tuple, leaf: Any) -> str:
    return "muon" if leaf.ndim >= 2 else "adamw"


_MATRICES = where(_matrices)
_MATRICES_AND_ND = where(_matrices_and_nd)


def muon(
    learning_rate: ScalarOrSchedule = 1e-3,
    weight_decay: ScalarOrSchedule | None = 0.1,
    momentum: Scalar = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[Any, Any, Any] = NS_COEFFICIENTS,
    eps: Scalar = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    reshape: Callable[[tuple[int, ...]], tuple[int, int]] | None = None,
    ns_dtype: DTypeLike | None = None,
    adamw: Mapping[str, Any] | GradientTransformation | None = None,
    labels: Any = None,
):
    """Muon, exactly torch.optim.Muon (Newton-Schulz in float32 or wider, not bfloat16).

    p <- p - lr (r NS(M) + wd p), with M the (Nesterov) momentum and r, NS as in
    ``scale_by_muon``: = chain(scale_by_muon(...), add_decayed_weights(wd),
    scale_by_learning_rate(lr)), decoupled decay as torch (p (1 - lr wd)).
    Arguments in torch.optim.Muon's order (Optax has only ``optax.contrib.muon``, whose
    second argument is a tuple: a positional port fails on ``weight_decay``).

    Muon is for matrices. ``adamw`` routes the other leaves to AdamW, exactly as torch's
    recipe of two optimizers: it is ``partition({"muon": <the chain above>, "adamw":
    gx.adamw(**adamw)}, labels)``, with ``labels`` by default the 2-D leaves for Muon
    (and the N-D ones too when ``reshape`` is given), the rest for AdamW.

    Args:
      learning_rate: lr >= 0, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.Muon).
      weight_decay: decoupled decay coefficient wd >= 0 of the Muon leaves, a number or
        a schedule, or None: no term. Default 0.1 (torch.optim.Muon).
      momentum: mu in [0, 1). Default 0.95 (torch.optim.Muon).
      nesterov: orthogonalise the Nesterov momentum. Default True (torch.optim.Muon).
      ns_coefficients: (a, b, c) of the Newton-Schulz quintic. Default (3.4445, -4.775,
        2.0315) (Jordan et al., 2024; torch.optim.Muon).
      eps: floor of the norm the momentum is divided by, > 0. Default 1e-7
        (torch.optim.Muon).
      ns_steps: Newton-Schulz iterations, an int in [0, 100). Default 5 (torch.optim.Muon).
      adjust_lr_fn: None / "original" (sqrt(max(1, rows / cols))) or "match_rms_adamw"
        (0.2 sqrt(max(rows, cols))). Default None (torch.optim.Muon).
      reshape: None, or a function shape -> (rows, cols): the 2-D view of the Muon
        leaves that are not 2-D. Default None: such a leaf is refused (naming its path).
      ns_dtype: dtype of the iteration. Default None: the parameter's, at least float32.
      adamw: None, a dict of ``gx.adamw`` keyword arguments, or any transform: the
        optimizer of the leaves ``labels`` does not give to Muon. Default None: every
        leaf is Muon's.
      labels: with ``adamw``, which leaves go where: a ``partition`` labels selector
        ("muon" / "adamw"; a tree, ``gx.where`` or ``gx.match``). Default None: the 2-D
        leaves (and N-D ones if ``reshape``) to Muon.

    Example:
      >>> tx = gx.muon(learning_rate=0.1, adamw=dict(learning_rate=0.1))
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.eye(2), "b": jnp.ones(2)}, state, params)
      >>> updates["w"].round(2)  # -lr (NS(g) + wd p), NS(I) = 1.11 I: near-orthogonal
      Array([[-0.12, -0.01],
             [-0.01, -0.12]], dtype=float32)
      >>> updates["b"].round(3)  # AdamW's first step: -lr (1 + 0.01)
      Array([-0.101, -0.101], dtype=float32)
    """
    core = (
        scale_by_muon(
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            reshape=reshape,
            ns_dtype=ns_dtype,
        ),
        maybe_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    if adamw is None:
        if labels is not None:
            raise ValueError("muon: labels was given without adamw (every leaf is Muon's)")
        return named_chain("muon", *core)
    other = _adamw(**adamw) if isinstance(adamw, Mapping) else adamw
    check_transform("muon", "adamw", other)
    if labels is None:
        labels = _MATRICES if reshape is None else _MATRICES_AND_ND
    muon_part = chain(*(t for t in core if t is not None))
    return named_chain("muon", partition({"muon": muon_part, "adamw": other}, labels))
