"""Selecting parameters: ``masked``, ``partition`` and ``freeze``.

``masked(inner, mask)`` runs ``inner`` on the selected parameters only;
``partition({label: tx, ...}, labels)`` runs one transform per group of parameters;
``freeze(inner, selector)`` gives the selected parameters exact zero updates and runs
``inner`` on the others.

Which parameters are selected is said with a selector (a tree of bools or labels,
``gx.where(predicate)``, a pattern string or ``gx.match(...)``); the syntax and the rules
are in ``gradxform.wrappers.selectors``.

Why ``freeze`` wraps a transform
--------------------------------
A zero update is not enough to keep a parameter still when a later transform adds to it:
``chain(<zeros for encoder>, adamw(1e-3))`` still decays the encoder weights. So
``freeze(inner, selector)`` sits *outside* the optimizer: frozen leaves never reach
``inner`` (no optimizer state is allocated for them) and leave ``freeze`` as exact zeros,
so nothing inside ``inner``, weight decay included, can move them. Put ``freeze`` outermost
(or after every transform that could add to the update). The same thing spelled with
``partition``: ``partition({"train": adamw(1e-3), "frozen": set_to_zero()}, labels)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import (
    check_params,
    check_transform,
    check_tree_structure,
    is_none,
    is_param,
)
from .._module import static_field
from .._typing import OptState, PyTree, TreeDef
from ..base import GradientTransformation
from .selectors import Inverted, as_selector, resolve_selector

__all__ = ["masked", "partition", "freeze", "MaskedState", "PartitionState"]


# --------------------------------------------------------------------------------------
# Splitting and merging trees


def _ref_tree(updates: PyTree, params: PyTree | None) -> PyTree:
    """The tree selectors are resolved against at update: params if given, else updates."""
    check_params(updates, params)
    return updates if params is None else params


def _select(tree: PyTree | None, keep: list[bool]) -> PyTree | None:
    """``tree`` with the leaves not kept replaced by None."""
    if tree is None:
        return None
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_none)
    return treedef.unflatten([x if k else None for x, k in zip(leaves, keep)])


def _inner_leaves(owner: str, sent: PyTree, received: PyTree) -> list[Any]:
    check_tree_structure(
        sent, received, names=(f"{owner} inner input", f"{owner} inner output"), allow_none=True
    )
    treedef: TreeDef = jax.tree_util.tree_structure(sent, is_leaf=is_none)
    return treedef.flatten_up_to(received)


def _zeros(u: Any) -> Any:
    return jnp.zeros_like(u) if is_param(u) else u


def _masked_update(owner, inner, mask, updates, state, params, extra, *, zero_rest: bool):
    """Run ``inner`` on the selected leaves; the rest pass through (or become zeros)."""
    ref = _ref_tree(updates, params)
    sel = [lab is True for lab in resolve_selector(owner, mask, ref, "mask")]
    sub_updates = _select(updates, sel)
    new_sub, inner_state = inner.update(
        sub_updates, state.inner_state, _select(params, sel), **extra
    )
    new_leaves = _inner_leaves(owner, sub_updates, new_sub)
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    rest = _zeros if zero_rest else (lambda u: u)
    out = [n if s else rest(u) for u, n, s in zip(leaves, new_leaves, sel)]
    return treedef.unflatten(out), MaskedState(inner_state=inner_state)


# --------------------------------------------------------------------------------------
# The transforms


class MaskedState(NamedTuple):
    """State of ``masked`` and ``freeze``: the inner state, with slots for selected leaves only."""

    inner_state: OptState


class masked(GradientTransformation):
    """Runs ``inner`` on the selected parameters; other updates pass through unchanged.

    ``inner`` sees a tree in which the unselected leaves of updates and params are None,
    so its state has no slots for them. ``mask``: a tree of bools shaped like (a prefix
    of) the params, ``gx.where(predicate)``, a pattern string such as ``"*/bias"``, or
    ``gx.match(...)`` (see the module docstring). ``update``'s extra keyword arguments are
    passed to ``inner`` unchanged.

    ``chain(masked(scale_by_adam(), mask), scale_by_learning_rate(lr))`` gives unselected
    leaves a plain SGD step; ``masked(adam(lr), mask)`` leaves them with their raw gradient
    (usually you want ``partition`` or ``freeze`` for the rest).

    Args:
      inner: the transform run on the selected leaves.
      mask: the selector of those leaves (a tree of bools, ``gx.where``, a pattern
        string or ``gx.match``). No default.

    Example:
      >>> tx = gx.masked(gx.scale(-0.5), "*/w")
      >>> params = {"dense": {"w": jnp.array([1.0]), "b": jnp.array([1.0])}}
      >>> updates, state = tx.update(params, tx.init(params), params)
      >>> updates
      {'dense': {'b': Array([1.], dtype=float32), 'w': Array([-0.5], dtype=float32)}}
    """

    inner: GradientTransformation
    mask: Any = static_field()

    def __post_init__(self):
        check_transform("masked", "inner", self.inner)
        object.__setattr__(self, "mask", as_selector("masked", self.mask, "mask"))

    def init(self, params):
        sel = [lab is True for lab in resolve_selector("masked", self.mask, params, "mask")]
        return MaskedState(inner_state=self.inner.init(_select(params, sel)))

    def update(self, updates, state, params=None, **extra):
        return _masked_update(
            "masked", self.inner, self.mask, updates, state, params, extra, zero_rest=False
        )


class freeze(GradientTransformation):
    """Frozen parameters get exact zero updates and no state; the others go through ``inner``.

    ``freeze(adamw(1e-3), "encoder/**")``: the encoder never moves, even under the weight
    decay inside ``adamw``, and adamw keeps moments for the other parameters only.
    ``selector`` takes the same values as ``masked``'s mask (True: frozen). Place ``freeze``
    outermost (a transform after it that adds to the update, e.g. weight decay, would move
    frozen parameters again). Equivalent to
    ``partition({"train": inner, "frozen": set_to_zero()}, labels)``.

    Args:
      inner: the transform run on the parameters that are not frozen.
      selector: the frozen parameters (a tree of bools, ``gx.where``, a pattern string or
        ``gx.match``). Required (the None default only gives a clear error).

    Example:
      >>> tx = gx.freeze(gx.adamw(learning_rate=0.5, weight_decay=0.5), "encoder/**")
      >>> params = {"encoder": jnp.array([1.0]), "head": jnp.array([2.0])}
      >>> state = tx.init(params)
      >>> grads = {"encoder": jnp.array([1.0]), "head": jnp.array([1.0])}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["encoder"], updates["head"].round(4)
      (Array([0.], dtype=float32), Array([-1.], dtype=float32))
    """

    inner: GradientTransformation
    selector: Any = static_field(default=None)

    def __post_init__(self):
        if not hasattr(self.inner, "update"):
            got = "only " if self.selector is None else ""
            raise TypeError(
                f"freeze wraps the transform it protects: gx.freeze(tx, selector), got "
                f"{got}{self.inner!r} as tx. (A freeze placed before other transforms in a "
                "chain could not stop a later one, e.g. weight decay, from moving the frozen "
                "parameters.)"
            )
        if self.selector is None:
            raise TypeError("freeze: give the selector of the frozen parameters")
        check_transform("freeze", "inner", self.inner)
        object.__setattr__(self, "selector", as_selector("freeze", self.selector, "mask"))

    def init(self, params):
        train = resolve_selector("freeze", Inverted(self.selector), params, "mask")
        return MaskedState(
            inner_state=self.inner.init(_select(params, [lab is True for lab in train]))
        )

    def update(self, updates, state, params=None, **extra):
        return _masked_update(
            "freeze",
            self.inner,
            Inverted(self.selector),  # inner runs on the leaves that are not frozen
            updates,
            state,
            params,
            extra,
            zero_rest=True,
        )


class PartitionState(NamedTuple):
    """State of ``partition``: ``inner_state[label]`` is the state of that label's transform."""

    inner_state: dict[str, OptState]


class partition(GradientTransformation):
    """One transform per group of parameters: ``transforms[label]`` runs on that label's leaves.

    Each transform sees a tree in which the other labels' leaves are None (so it keeps
    state for its own leaves only). ``labels``: a tree of label strings shaped like (a
    prefix of) the params, ``gx.where(lambda path, leaf: label)``, or
    ``gx.match({pattern: label, ...}, default=...)``. Every parameter must get exactly one
    label, every label must have a transform and every transform must get a parameter.

    Args:
      transforms: a non-empty dict {label: transform}.
      labels: the label of each parameter (a tree of label strings, ``gx.where`` or
        ``gx.match``). No default.

    Example:
      >>> tx = gx.partition(
      ...     {"fast": gx.sgd(learning_rate=1.0), "slow": gx.sgd(learning_rate=0.25)},
      ...     {"w": "fast", "b": "slow"},
      ... )
      >>> params = {"w": jnp.array([1.0]), "b": jnp.array([1.0])}
      >>> updates, state = tx.update(params, tx.init(params), params)
      >>> updates
      {'b': Array([-0.25], dtype=float32), 'w': Array([-1.], dtype=float32)}
      >>> sorted(state.inner_state)
      ['fast', 'slow']
    """

    transforms: dict
    labels: Any = static_field()

    def __post_init__(self):
        if not isinstance(self.transforms, Mapping) or not self.transforms:
            raise TypeError(
                "partition: transforms must be a non-empty dict {label: transform}, got "
                f"{self.transforms!r}"
            )
        for k, tx in self.transforms.items():
            if not isinstance(k, str):
                raise TypeError(f"partition: labels must be strings, got {k!r}")
            check_transform("partition", f"transforms[{k!r}]", tx)
        object.__setattr__(self, "transforms", dict(sorted(self.transforms.items())))
        object.__setattr__(self, "labels", as_selector("partition", self.labels, "labels"))

    def _labels(self, ref):
        labels = resolve_selector("partition", self.labels, ref, "labels")
        used = {lab for lab in labels if lab is not None}
        missing = sorted(used - self.transforms.keys())
        unused = sorted(self.transforms.keys() - used)
        if missing or unused:
            lines = ["partition: labels and transforms do not correspond."]
            if missing:
                lines.append(f"  labels with no transform: {missing}")
            if unused:
                lines.append(f"  transforms no parameter is labelled for: {unused}")
            lines.append(f"  transforms given for: {sorted(self.transforms)}")
            raise ValueError("\n".join(lines))
        return labels

    def init(self, params):
        labels = self._labels(params)
        return PartitionState(
            inner_state={
                k: tx.init(_select(params, [lab == k for lab in labels]))
                for k, tx in self.transforms.items()
            }
        )

    def update(self, updates, state, params=None, **extra):
        labels = self._labels(_ref_tree(updates, params))
        if not isinstance(state, PartitionState) or set(state.inner_state) != set(self.transforms):
            got = (
                sorted(state.inner_state)
                if isinstance(state, PartitionState)
                else type(state).__name__
            )
            raise ValueError(
                f"partition.update: state does not belong to this partition: expected a "
                f"PartitionState with labels {sorted(self.transforms)}, got {got}"
            )
        treedef: TreeDef
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
        out = list(leaves)
        new_states = {}
        for k, tx in self.transforms.items():
            keep = [lab == k for lab in labels]
            sub = _select(updates, keep)
            new_sub, new_states[k] = tx.update(
                sub, state.inner_state[k], _select(params, keep), **extra
            )
            for i, (x, kept) in enumerate(zip(_inner_leaves("partition", sub, new_sub), keep)):
                if kept:
                    out[i] = x
        return treedef.unflatten(out), PartitionState(inner_state=new_states)
