"""Differentially private aggregation of per-example gradients (DP-SGD, Abadi et al., 2016).

DP-SGD bounds each example's influence: every per-example gradient g_i is scaled to
global norm <= C (all leaves jointly), the clipped gradients are summed (a sum whose
sensitivity to one example is C) and Gaussian noise N(0, (C sigma)^2 I) is added, then
divided by the batch size B, as Optax's ``differentially_private_aggregate``:

    u = (sum_i clip_C(g_i) + C sigma z) / B,   z ~ N(0, I).

The per-example gradients (a leading batch axis on every leaf: ``jax.vmap(jax.grad(loss),
in_axes=(None, 0))(params, batch)``) come in through ``update``'s ``per_example_grads``
keyword, which ``chain`` passes to every member; the positional updates then only give
the tree (and the dtypes) of the result: pass the batch gradient you have, or the params
(its values are never used). Without ``per_example_grads`` the updates are one example's
gradient (B = 1). Optax takes the per-example gradients as the updates themselves; here
they cannot be, because ``chain`` checks that updates are shaped like params.

- ``clip_per_example(l2_norm_clip)``: (1/B) sum_i clip_C(g_i): the mean of the clipped
  per-example gradients, a tree like params;
- ``add_dp_noise(l2_norm_clip, noise_multiplier, seed=...)``: adds C sigma z / B.

Chained they give Optax's number (``gx.dpsgd`` is that chain, then momentum and the
learning rate). Privacy accounting (epsilon, delta from sigma, the sampling rate and the
steps) is outside this library.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._checks import check_hparam, check_int, check_param_dtypes, is_none, is_param, leaf_path
from ._leafwise import abs2, as_int, compute_dtype, wider_dtype
from ._typing import PyTree, Scalar, TreeDef
from .base import GradientTransformation, empty_state

__all__ = ["clip_per_example", "add_dp_noise", "AddDpNoiseState"]


def _per_example(updates: PyTree, extra: dict, owner: str) -> tuple[list, list, TreeDef, int]:
    """(update leaves, per-example leaves, treedef, B). Without ``per_example_grads`` the
    per-example leaves are the updates with a batch axis of 1."""
    treedef: TreeDef
    u_leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    pe = extra.get("per_example_grads")
    if pe is None:
        one = [jnp.asarray(u)[None] if is_param(u) else None for u in u_leaves]
        return u_leaves, one, treedef, 1
    check_param_dtypes(pe, "per_example_grads")
    try:
        pe_leaves = treedef.flatten_up_to(pe)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{owner}: per_example_grads must have the tree structure of the updates "
            f"(of params), got {jax.tree_util.tree_structure(pe)}, expected {treedef}"
        ) from e
    batch = None
    out: list[jax.Array | None] = []
    for j, (u, g) in enumerate(zip(u_leaves, pe_leaves)):
        if not is_param(u):
            out.append(None)
            continue
        if g is None or not is_param(g):
            raise ValueError(
                f"{owner}: per_example_grads has no array at {leaf_path(updates, j)}, where "
                "the updates have one: give every optimized leaf's per-example gradients"
            )
        g = jnp.asarray(g)
        want = jnp.shape(u)
        same_batch = batch is None or g.shape[0] == batch
        if g.ndim != len(want) + 1 or g.shape[1:] != want or not same_batch:
            raise ValueError(
                f"{owner}: per_example_grads at {leaf_path(updates, j)} has shape "
                f"{g.shape}; expected (batch, *{want}) with the same batch size on every "
                f"leaf{'' if batch is None else f' ({batch})'}"
            )
        batch = g.shape[0]
        out.append(g)
    return u_leaves, out, treedef, 1 if batch is None else batch


class clip_per_example(GradientTransformation):
    """Mean of per-example gradients each clipped to global norm <= C (DP-SGD's clip).

    n_i = sqrt(sum over leaves of ||g_i||^2);  u = (1/B) sum_i g_i min(1, C / n_i).
    The per-example gradients come as ``update(..., per_example_grads=...)`` (a leading
    batch axis of size B on every leaf; see the module docstring), else the updates
    are one example (B = 1). Multipliers and the sum are formed in at least float32;
    the result has the updates' dtypes. One example changes the sum by at most C (the
    sensitivity ``add_dp_noise`` calibrates to). Optax's ``per_example_global_norm_clip``
    returns the sum; this returns the mean (the sum / B, like every gradient here).

    Args:
      l2_norm_clip: C > 0, the largest per-example global norm. No default (Optax's
        has none).

    Example:
      >>> tx = gx.clip_per_example(1.0)
      >>> params = {"a": jnp.zeros(2)}
      >>> per_example = {"a": jnp.array([[0.0, 4.0], [0.0, 0.5]])}  # norms 4 and 0.5
      >>> updates, _ = tx.update(params, tx.init(params), params, per_example_grads=per_example)
      >>> updates["a"]  # ([0, 1] + [0, 0.5]) / 2
      Array([0.  , 0.75], dtype=float32)
    """

    l2_norm_clip: Scalar

    def __post_init__(self):
        check_hparam("clip_per_example", "l2_norm_clip", self.l2_norm_clip, low=0, low_open=True)

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        u_leaves, pe, treedef, batch = _per_example(updates, extra, "clip_per_example")
        arrays = [g for g in pe if g is not None]
        if not arrays:
            return updates, state
        dts = [compute_dtype(g) for g in arrays]
        norm_dt = wider_dtype(*[jnp.finfo(dt).dtype for dt in dts])
        sq = sum(
            # A sum over the example's axes, not a reshape: a reshape of a sharded leaf
            # makes XLA all-gather it, the sum needs only an all-reduce of B numbers.
            jnp.sum(abs2(g.astype(dt)), axis=tuple(range(1, g.ndim))).astype(norm_dt)
            for g, dt in zip(arrays, dts)
        )
        norms = jnp.sqrt(sq)  # (B,)
        c = jnp.asarray(self.l2_norm_clip).astype(norm_dt)
        mult = jnp.where(norms > c, c / jnp.where(norms > c, norms, 1), 1)
        out = []
        for u, g in zip(u_leaves, pe):
            if g is None:
                out.append(u)
                continue
            dt = compute_dtype(g)
            # A contraction over the batch axis (as Optax's tensordot), not a product and
            # a sum over axis 0, which XLA on CPU runs as a slow strided reduction (3.8x
            # Optax's step at 8 examples x 3.2M params). HIGHEST: no TF32/bf16 passes on
            # accelerators.
            m = mult.astype(jnp.finfo(dt).dtype).astype(dt)
            hi = jax.lax.Precision.HIGHEST
            mean = jnp.tensordot(m, g.astype(dt), axes=(0, 0), precision=hi) / batch
            out.append(mean.astype(jnp.asarray(u).dtype))
        return treedef.unflatten(out), state


class AddDpNoiseState(NamedTuple):
    key: jax.Array  # uint32[2] PRNG key (jax.random.PRNGKey), split once per update


class add_dp_noise(GradientTransformation):
    """Adds DP-SGD's Gaussian noise to the mean clipped gradient: u <- u + C sigma z / B.

    z ~ N(0, I) per element (circular complex normal of the same total variance for
    complex leaves), drawn as Optax's ``differentially_private_aggregate`` draws it: the
    key is split into (next key, one key per optimized leaf in tree order) and
    z = ``jax.random.normal(leaf_key, shape, dtype)``; so for the same seed the noise is
    Optax's. B is the batch size of ``per_example_grads`` (1 without it). The noise is
    drawn whatever sigma, 0 included (the state's key advances every step).

    Args:
      l2_norm_clip: C > 0, the clipping norm of ``clip_per_example`` (the sum's
        sensitivity). No default.
      noise_multiplier: sigma >= 0, the noise standard deviation over C. No default.
      seed: keyword-only, the PRNG seed, an integer >= 0 (a pytree leaf: it may be
        traced). Keep it secret: noise that can be regenerated protects nothing.
        No default.

    Example:
      >>> tx = gx.add_dp_noise(1.0, 0.5, seed=0)
      >>> params = jnp.zeros(10_000)
      >>> state = tx.init(params)
      >>> per_example = jnp.zeros((4, 10_000))
      >>> updates, state = tx.update(params, state, params, per_example_grads=per_example)
      >>> bool(abs(float(jnp.std(updates)) - 0.5 / 4) < 0.005)  # C sigma / B
      True
    """

    l2_norm_clip: Scalar
    noise_multiplier: Scalar
    _: KW_ONLY
    seed: int

    def __post_init__(self):
        check_hparam("add_dp_noise", "l2_norm_clip", self.l2_norm_clip, low=0, low_open=True)
        check_hparam("add_dp_noise", "noise_multiplier", self.noise_multiplier, low=0)
        check_int("add_dp_noise", "seed", self.seed, low=0)

    def init(self, params):
        check_param_dtypes(params, "params")
        return AddDpNoiseState(key=jax.random.PRNGKey(as_int(self.seed)))

    def update(self, updates, state, params=None, **extra):
        u_leaves, pe, treedef, batch = _per_example(updates, extra, "add_dp_noise")
        n = sum(g is not None for g in pe)
        key, *keys = jax.random.split(state.key, n + 1)
        key_iter = iter(keys)
        out = []
        for u, g in zip(u_leaves, pe):
            if g is None:
                out.append(u)
                continue
            u = jnp.asarray(u)
            dt = compute_dtype(u)
            real = jnp.finfo(dt).dtype
            std = (
                jnp.asarray(self.l2_norm_clip).astype(real)
                * jnp.asarray(self.noise_multiplier).astype(real)
                / batch
            )
            z = jax.random.normal(next(key_iter), u.shape, dt)
            out.append((u.astype(dt) + z * std.astype(dt)).astype(u.dtype))
        return treedef.unflatten(out), AddDpNoiseState(key=key)
