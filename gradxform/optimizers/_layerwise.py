"""Helpers of the layer-wise families (trust_ratio, novograd): a layer is a leaf.

``leaf_norm`` is the Euclidean norm of a whole leaf without overflow; ``selected`` turns
a selector (``gx.masked``'s language) into a tree of Python bools shaped like params.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_hparam, is_none
from .._typing import PyTree, TreeDef
from ..wrappers.selectors import as_selector, resolve_selector


def leaf_norm(x: jax.Array) -> jax.Array:
    """||x||_2 over the whole leaf, real, in x's (real) dtype, without overflow.

    The entries are divided by max |x| before squaring: sum(x**2) overflows float32 once
    ||x|| passes 1.8e19 (and underflows to 0 below 1e-19), the scaled sum never does. The
    result is inf only where the norm itself is.
    """
    a = jnp.abs(x)
    if a.size == 0:
        return jnp.zeros([], a.dtype)
    scale = jnp.max(a)
    safe = jnp.where(scale > 0, scale, jnp.ones([], a.dtype))
    return scale * jnp.sqrt(jnp.sum(jnp.square(a / safe)))


def check_decay(owner: str, weight_decay: Any, mask: Any) -> Any:
    """Validates a coupled decay coefficient (None: no term) and returns its mask as a
    selector (None: every leaf)."""
    if weight_decay is None:
        if mask is not None:
            raise ValueError(
                f"{owner}: weight_decay_mask was given but weight_decay is None (no decay); "
                "give weight_decay a number"
            )
        return None
    check_hparam(owner, "weight_decay", weight_decay, low=0)
    return as_selector(owner, mask, "mask") if mask is not None else None


def selected(owner: str, selector: Any, params: PyTree) -> PyTree:
    """A tree shaped like params: True where ``selector`` (None: every leaf) selects."""
    treedef: TreeDef = jax.tree_util.tree_structure(params, is_leaf=is_none)
    if selector is None:
        return treedef.unflatten([True] * treedef.num_leaves)
    labels = resolve_selector(owner, selector, params, "mask")
    return treedef.unflatten([lab is True for lab in labels])
