"""The metrics side channel: transforms report named scalars through their state.

A state type reports by defining ``_metrics(self) -> dict[str, scalar]`` (for example
``scale_by_learning_rate`` reports the learning rate in effect, ``clip_by_global_norm``
the norm before and after clipping). ``metrics(state)`` walks any optimizer state and
returns one flat ``{"path/name": scalar}`` dict, inside or outside ``jit``; the path is
made of chain member names and state field names. ``monitor()`` is a pass-through
transform that records norms wherever it is placed in a chain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._checks import is_param
from ._typing import OptState
from .base import ChainState, GradientTransformation
from .tree import global_norm

__all__ = ["monitor", "metrics"]


class MonitorState(NamedTuple):
    update_norm: jax.Array  # float32 scalar: global norm of the updates passing through
    param_norm: jax.Array  # float32 scalar: global norm of params (0 if not given)
    update_max: jax.Array  # float32 scalar: largest |update| element
    nonfinite: jax.Array  # int32 scalar: number of NaN/Inf update elements

    def _metrics(self):
        return dict(self._asdict())


class monitor(GradientTransformation):
    """Records statistics of the updates at its place in a chain; u <- u unchanged.

    Placed first in a chain it sees the raw gradients; placed last, the final steps.
    Reports ``update_norm``, ``param_norm``, ``update_max`` and ``nonfinite`` (count of
    NaN/Inf elements) through ``gx.metrics``.

    Example:
      >>> tx = gx.chain(gx.monitor(), gx.sgd(learning_rate=0.5))
      >>> params = jnp.array([0.0, 1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([3.0, -4.0]), state, params)
      >>> m = gx.metrics(state)
      >>> m["monitor/update_norm"], m["monitor/update_max"], m["monitor/nonfinite"]
      (Array(5., dtype=float32), Array(4., dtype=float32), Array(0, dtype=int32))
    """

    def init(self, params):
        zero = jnp.zeros([], jnp.float32)
        return MonitorState(zero, zero, zero, jnp.zeros([], jnp.int32))

    def update(self, updates, state, params=None, **extra):
        # The leaves global_norm counts too (Python complex included).
        leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(updates) if is_param(x)]
        maxes = [jnp.max(jnp.abs(x)).astype(jnp.float32) for x in leaves if x.size]
        umax = jnp.max(jnp.stack(maxes)) if maxes else jnp.zeros([], jnp.float32)
        bad = sum(
            (jnp.sum(~jnp.isfinite(x)).astype(jnp.int32) for x in leaves), jnp.zeros([], jnp.int32)
        )
        pnorm = jnp.zeros([], jnp.float32) if params is None else global_norm(params)
        return updates, MonitorState(
            update_norm=global_norm(updates).astype(jnp.float32),
            param_norm=pnorm.astype(jnp.float32),
            update_max=umax,
            nonfinite=bad,
        )


def _is_state(x: Any) -> bool:
    return isinstance(x, ChainState) or (isinstance(x, tuple) and hasattr(x, "_fields"))


def metrics(state: OptState) -> dict[str, jax.Array]:
    """Flat ``{"path/name": scalar}`` of everything the states in ``state`` report.

    Keys are built from chain member names and state field names, so they are stable
    across steps and usable as logging keys.

    Args:
      state: any optimizer state (a ``ChainState``, a wrapper's state, ...).

    Example:
      >>> tx = gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(learning_rate=0.5))
      >>> state = tx.init(jnp.zeros(2))
      >>> _, state = tx.update(jnp.array([3.0, 4.0]), state)
      >>> for key, value in sorted(gx.metrics(state).items()):
      ...     print(key, float(value))
      clip_by_global_norm/norm_after 1.0
      clip_by_global_norm/norm_before 5.0
      sgd/scale_by_learning_rate/learning_rate 0.5
    """
    out: dict[str, jax.Array] = {}

    def join(path, name):
        return f"{path}/{name}" if path else str(name)

    def walk(st, path):
        if isinstance(st, ChainState):
            for name, sub in zip(st.names, st.states):
                walk(sub, join(path, name))
            return
        if hasattr(st, "_metrics"):
            for k, v in st._metrics().items():
                out[join(path, k)] = v
        if _is_state(st):
            for name in st._fields:
                sub = getattr(st, name)
                if _is_state(sub):
                    walk(sub, join(path, name))
                elif isinstance(sub, dict) and any(_is_state(v) for v in sub.values()):
                    for k, v in sub.items():
                        walk(v, join(join(path, name), k))
                elif isinstance(sub, (list, tuple)) and any(_is_state(v) for v in sub):
                    for i, v in enumerate(sub):
                        walk(v, join(join(path, name), i))

    walk(state, "")
    return out
