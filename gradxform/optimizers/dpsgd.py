"""DP-SGD (Abadi et al., 2016): SGD on clipped, noised per-example gradients."""

from __future__ import annotations

from .._typing import Scalar, ScalarOrSchedule
from ..base import named_chain
from ..privacy import add_dp_noise, clip_per_example
from ..scaling import scale_by_learning_rate
from .sgd import scale_by_momentum

__all__ = ["dpsgd"]


def dpsgd(
    learning_rate: ScalarOrSchedule,
    *,
    l2_norm_clip: Scalar,
    noise_multiplier: Scalar,
    seed: int,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
):
    """DP-SGD, Optax's ``optax.contrib.dpsgd``: clip per example, add noise, SGD step.

    g = (sum_i g_i min(1, C / ||g_i||) + C sigma z) / B,  z ~ N(0, I);
    v <- mu v + g (momentum, if given; Nesterov: d = g + mu v);  p <- p - lr d.
    = chain(clip_per_example(C), add_dp_noise(C, sigma, seed), [scale_by_momentum(mu,
    nesterov=...)], scale_by_learning_rate(lr)). Pass the per-example gradients (leading
    batch axis on every leaf) as ``update(grads, state, params, per_example_grads=...)``;
    ``grads`` only gives the result's tree and dtypes (see ``gradxform.privacy``). Without
    them the gradient is one example (B = 1). The same numbers as Optax for the same
    seed, up to rounding (Optax divides by B after adding the noise). Every argument
    after ``learning_rate`` is keyword-only (Optax's are positional): the per-example
    gradients come differently, so a port has to be looked at anyway.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. No default (Optax).
      l2_norm_clip: C > 0, the largest per-example gradient norm. No default (Optax).
      noise_multiplier: sigma >= 0, the noise standard deviation over C. No default
        (Optax).
      seed: the PRNG seed of the noise, an integer >= 0; keep it secret. No default
        (Optax).
      momentum: mu in [0, 1) (a heavy-ball trace, torch's SGD momentum without
        dampening; Optax's ``trace``), or None: none. Default None (Optax).
      nesterov: Nesterov momentum; needs momentum. Default False (Optax).

    Example:
      >>> tx = gx.dpsgd(1.0, l2_norm_clip=1.0, noise_multiplier=0.0, seed=0)
      >>> params = {"w": jnp.zeros(2)}
      >>> state = tx.init(params)
      >>> per_example = {"w": jnp.array([[0.0, 4.0], [0.0, 0.5]])}  # norms 4 and 0.5
      >>> updates, state = tx.update(params, state, params, per_example_grads=per_example)
      >>> updates["w"]  # -([0, 1] + [0, 0.5]) / 2
      Array([-0.  , -0.75], dtype=float32)
    """
    if nesterov and momentum is None:
        raise ValueError("dpsgd: nesterov=True requires momentum (a number in [0, 1))")
    return named_chain(
        "dpsgd",
        clip_per_example(l2_norm_clip),
        add_dp_noise(l2_norm_clip, noise_multiplier, seed=seed),
        None if momentum is None else scale_by_momentum(momentum, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )
