"""Regularization terms added to the update: L2 weight decay and L1 (two forms)."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from ._checks import (
    check_hparam,
    check_param_dtypes,
    check_params,
    check_tree_structure,
    concrete_number,
    is_none,
    is_param,
    need_params,
)
from ._leafwise import (
    compute_dtype,
    landing_dtypes,
    map_updates,
    resolve,
    safe_increment,
    scalar_like,
    zero_count,
)
from ._module import static_field
from ._typing import Scalar, ScalarOrSchedule, TreeDef
from .base import GradientTransformation, empty_state
from .wrappers._paths import is_tree_leaf
from .wrappers.selectors import as_selector, match, resolve_selector, where

__all__ = ["add_decayed_weights", "add_l1_subgradient", "proximal_l1"]


def _as_mask(owner: str, mask: Any) -> Any:
    """A weight-decay mask as a selector (the language of ``gx.masked``), or as itself
    when it is a plain function ``params -> tree of bools``: the one kind of mask that may
    compute its bools from the values (also under ``jit``), which a selector cannot."""
    if mask is None or _is_mask_function(mask):
        return mask
    return as_selector(owner, mask, "mask")


def _is_mask_function(mask: Any) -> bool:
    # A callable pytree (an Equinox module of bools) is a mask tree, not a function;
    # where/match are selectors.
    return callable(mask) and not isinstance(mask, (where, match)) and is_tree_leaf(mask)


def _mask_tree(owner: str, mask: Any, params: Any) -> Any:
    """The mask as a tree shaped like params (True: apply the term to that leaf)."""
    if mask is None:
        return jax.tree_util.tree_map(lambda _: True, params)
    if not _is_mask_function(mask):
        labels = resolve_selector(owner, mask, params, "mask")
        treedef: TreeDef = jax.tree_util.tree_structure(params, is_leaf=is_none)
        return treedef.unflatten([lab is True for lab in labels])
    tree = mask(params)
    # allow_none: inside masked/partition the params a transform sees are None where
    # another transform owns the leaf, while the user's mask still has a bool there.
    check_tree_structure(params, tree, names=("params", f"{owner} mask"), allow_none=True)
    flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_none)[0]
    for (path, p), m in zip(flat, jax.tree_util.tree_leaves(tree, is_leaf=is_none)):
        boolean = isinstance(m, bool) or (hasattr(m, "dtype") and m.dtype == jnp.bool_)
        if is_param(p) and not boolean:
            raise TypeError(
                f"{owner}: the mask has {m!r} at {jax.tree_util.keystr(path) or '<root>'}, "
                "over a parameter; give True or False there"
            )
    return tree


class WeightDecayState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: the schedule's input


class add_decayed_weights(GradientTransformation):
    """Adds the L2 / weight-decay term: u <- u + wd(t) * p, on masked leaves only.

    Before an adaptive scaling (``chain(add_decayed_weights(wd), scale_by_adam(), ...)``)
    this is coupled L2 regularization, torch ``Adam(weight_decay=wd)``; after it, it is
    decoupled weight decay (Loshchilov & Hutter, 2019), torch ``AdamW``.

    Args:
      weight_decay: the coefficient wd >= 0, a number or a schedule t -> wd. Default 0.
      mask: which leaves decay. None (all), or a selector as ``gx.masked`` takes it: a
        tree of Python bools shaped like (a prefix of) the params, a pattern string
        (``"**/kernel"``), ``gx.match(...)`` or ``gx.where(predicate)``. One exception: a
        plain function ``params -> tree of bools``, whose bools may be arrays computed
        from the values (also under jit). Unmasked leaves pass through unchanged.
        Default None.

    Example:
      >>> tx = gx.add_decayed_weights(0.5, mask="*/w")
      >>> params = {"dense": {"w": jnp.array([2.0]), "b": jnp.array([2.0])}}
      >>> grads = {"dense": {"w": jnp.array([1.0]), "b": jnp.array([1.0])}}
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> updates
      {'dense': {'b': Array([1.], dtype=float32), 'w': Array([2.], dtype=float32)}}
    """

    weight_decay: ScalarOrSchedule = 0.0
    mask: Any = static_field(default=None)

    def __post_init__(self):
        check_hparam("add_decayed_weights", "weight_decay", self.weight_decay, low=0, schedule=True)
        object.__setattr__(self, "mask", _as_mask("add_decayed_weights", self.mask))

    def init(self, params):
        check_param_dtypes(params, "params")
        return WeightDecayState(count=zero_count())

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        if concrete_number(self.weight_decay) == 0:
            # A coefficient known to be 0 (a number, not a traced jit argument or an
            # optax.inject_hyperparams array) costs nothing and needs no params; the state
            # is the same as for any other coefficient, so the structure never depends on
            # whether the coefficient is traced.
            if params is not None:
                check_params(updates, params)
            return updates, WeightDecayState(count=count)
        need_params("add_decayed_weights", params)
        check_params(updates, params)
        wd = resolve(self.weight_decay, state.count)
        mask = _mask_tree("add_decayed_weights", self.mask, params)

        def f(u, p, m):
            if isinstance(m, bool) and not m:
                return (u,)
            dt = compute_dtype(u)
            g = u.astype(dt) + scalar_like(wd, u) * jnp.asarray(p).astype(dt)
            if not isinstance(m, bool):  # a mask callable computed it from values: traced
                g = jnp.where(jnp.asarray(m), g, u.astype(dt))
            return (g.astype(u.dtype),)

        updates = map_updates(f, updates, params, mask)[0]
        return updates, WeightDecayState(count=count)


class add_l1_subgradient(GradientTransformation):
    """Adds the L1 subgradient: u <- u + strength * sign(p) (sign(0) = 0).

    Gradient-descent on ||p||_1 oscillates around zero instead of reaching it; use
    ``proximal_l1`` for exact zeros.

    Args:
      strength: the L1 coefficient lambda >= 0 in f(p) + lambda ||p||_1. No default.

    Example:
      >>> tx = gx.add_l1_subgradient(0.5)
      >>> params = jnp.array([2.0, -3.0, 0.0])
      >>> updates, state = tx.update(jnp.ones(3), tx.init(params), params)
      >>> updates
      Array([1.5, 0.5, 1. ], dtype=float32)
    """

    strength: Scalar

    def __post_init__(self):
        check_hparam("add_l1_subgradient", "strength", self.strength, low=0)

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        need_params("add_l1_subgradient", params)
        check_params(updates, params)

        def f(u, p):
            g = u.astype(compute_dtype(u))
            g = g + scalar_like(self.strength, u) * jnp.sign(jnp.asarray(p).astype(g.dtype))
            return (g.astype(u.dtype),)

        return map_updates(f, updates, params)[0], state


class proximal_l1(GradientTransformation):
    """Proximal L1 step (ISTA soft-thresholding), placed *last* in a chain.

    With z = p + u (the plain gradient step), the new parameter is
    prox(z) = sign(z) * max(|z| - lr(t) * strength, 0)  (for complex z: z/|z| * ...),
    so the emitted update is prox(z) - p. Small weights become exactly 0.

    Args:
      strength: the L1 coefficient lambda >= 0 in f(p) + lambda ||p||_1. No default.
      learning_rate: the step size lr >= 0 used by the preceding chain, a number or a
        schedule t -> lr (the same as the chain's). No default.

    Example:
      >>> tx = gx.chain(gx.sgd(learning_rate=0.5), gx.proximal_l1(1.0, learning_rate=0.5))
      >>> params = jnp.array([1.0, 0.25, -2.0])
      >>> updates, state = tx.update(jnp.zeros(3), tx.init(params), params)
      >>> gx.apply_updates(params, updates)  # shrunk by lr * strength, small ones to 0
      Array([ 0.5,  0. , -1.5], dtype=float32)
    """

    strength: Scalar
    learning_rate: ScalarOrSchedule
    lands_on_params: ClassVar[bool] = True  # chain keeps the update's landing dtype

    def __post_init__(self):
        check_hparam("proximal_l1", "strength", self.strength, low=0)
        check_hparam("proximal_l1", "learning_rate", self.learning_rate, low=0, schedule=True)

    def init(self, params):
        check_param_dtypes(params, "params")
        return WeightDecayState(count=zero_count())

    def update(self, updates, state, params=None, **extra):
        need_params("proximal_l1", params)
        check_params(updates, params)
        thresh = resolve(self.learning_rate, state.count) * self.strength

        def f(u, p):
            dt, out_dt = landing_dtypes(u, p)
            pc = jnp.asarray(p).astype(dt)
            z = pc + u.astype(dt)
            mag = jnp.abs(z)
            shrink = jnp.maximum(mag - scalar_like(thresh, mag), 0)
            safe = jnp.where(mag > 0, mag, 1)
            new = z * (shrink / safe).astype(dt)
            return ((new - pc).astype(out_dt),)

        return map_updates(f, updates, params)[0], WeightDecayState(
            count=safe_increment(state.count)
        )


def maybe_weight_decay(
    weight_decay: ScalarOrSchedule | None, mask: Any = None
) -> add_decayed_weights | None:
    """``add_decayed_weights`` unless ``weight_decay`` is None (the named optimizers'
    default), in which case the term is left out of the chain.

    The chain's structure, hence its state's, is decided by ``weight_decay is None``, a
    static fact, never by the coefficient's value: a value is a traced array under
    ``jit`` or ``optax.inject_hyperparams``, where a concrete 0 and a traced 0 must give
    the same state (leaving the term out for a concrete 0 made ``init`` and a jitted
    ``update`` disagree). None rather than "always include the term" keeps the default
    optimizers as they were (no extra state, no params needed, like Optax's adam and
    sgd); an explicit 0 keeps the term, whose update then skips its arithmetic.
    """
    if weight_decay is None:
        if mask is not None:
            raise ValueError(
                "weight_decay_mask was given but weight_decay is None (no decay); "
                "give weight_decay a number or a schedule"
            )
        return None
    return add_decayed_weights(weight_decay, mask)
