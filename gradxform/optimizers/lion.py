"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms")."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from .._leafwise import compute_dtype, map_params, map_updates, new_slot, scalar_like, slot_dtype
from .._module import static_field
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import check_betas

__all__ = ["scale_by_lion", "lion"]


class LionState(NamedTuple):
    mu: Any  # like params, mu_dtype: momentum


class scale_by_lion(GradientTransformation):
    """Lion's direction: u = sign(b1 m + (1 - b1) g);  m <- b2 m + (1 - b2) g.

    Defaults b1 = 0.9, b2 = 0.99 (paper). Every coordinate moves by exactly lr, so Lion
    wants a 3-10x smaller learning rate than AdamW.
    """

    b1: Any = 0.9
    b2: Any = 0.99
    mu_dtype: Any = static_field(default=None)

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
    learning_rate: Any = 1e-4,
    b1: Any = 0.9,
    b2: Any = 0.99,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
):
    """Lion with decoupled weight decay: p <- p - lr_t (sign(b1 m + (1 - b1) g) + wd p).

    = chain(scale_by_lion(b1, b2), add_decayed_weights(wd), scale_by_learning_rate(lr)).
    No torch.optim equivalent.
    """
    return named_chain(
        "lion",
        scale_by_lion(b1, b2),
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
