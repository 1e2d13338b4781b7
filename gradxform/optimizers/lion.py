"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms")."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from .._leafwise import compute_dtype, map_params, map_updates, new_slot, scalar_like, slot_dtype
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import check_betas

__all__ = ["scale_by_lion", "lion"]


class LionState(NamedTuple):
    mu: PyTree  # like params, mu_dtype: momentum


class scale_by_lion(GradientTransformation):
    """Lion's direction: u = sign(b1 m + (1 - b1) g);  m <- b2 m + (1 - b2) g.

    Every coordinate moves by exactly lr, so Lion wants a 3-10x smaller learning rate
    than AdamW.

    Args:
      b1: weight of the momentum in the sign's argument, in [0, 1). Default 0.9
        (Chen et al., 2023).
      b2: decay of the momentum m, in [0, 1). Default 0.99 (Chen et al., 2023).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.

    Example:
      >>> tx = gx.scale_by_lion()
      >>> g = jnp.array([0.5, -2.0, 0.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u
      Array([ 1., -1.,  0.], dtype=float32)
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.99
    mu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_lion", self.b1, self.b2, 1.0)

    def init(self, params):
        return LionState(mu=map_params(lambda p: new_slot(p, slot_dtype(p, self.mu_dtype)), params))

    def update(self, updates, state, params=None, **extra):
        def f(u, m_old):
            g = u.astype(compute_dtype(u))
            m = m_old.astype(g.dtype)
            out = jnp.sign(scalar_like(self.b1, g) * m + scalar_like(1 - self.b1, g) * g)
            m = scalar_like(self.b2, g) * m + scalar_like(1 - self.b2, g) * g
            return out.astype(u.dtype), m.astype(m_old.dtype)  # the storage dtype

        updates, mu = map_updates(f, updates, state.mu, n_out=2)
        return updates, LionState(mu=mu)


def lion(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: Scalar = 0.9,
    b2: Scalar = 0.99,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """Lion with decoupled weight decay: p <- p - lr_t (sign(b1 m + (1 - b1) g) + wd p).

    = chain(scale_by_lion(b1, b2), add_decayed_weights(wd), scale_by_learning_rate(lr)).
    No torch.optim equivalent. ``weight_decay`` is keyword-only (Optax's fourth positional
    argument is ``mu_dtype``) and off by default (Optax's default is 1e-3).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-4.
      b1: weight of the momentum in the sign's argument, in [0, 1). Default 0.9 (Chen et
        al., 2023).
      b2: decay of the momentum, in [0, 1). Default 0.99 (Chen et al., 2023).
      weight_decay: decoupled decay coefficient wd >= 0, a number or a schedule, or
        None: no term. Default None.
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.lion(learning_rate=0.5, weight_decay=0.5)
      >>> params = jnp.array([1.0, 4.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.25, -3.0]), state, params)
      >>> updates  # -lr (sign(g) + wd p)
      Array([-0.75, -0.5 ], dtype=float32)
    """
    return named_chain(
        "lion",
        scale_by_lion(b1, b2),
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
