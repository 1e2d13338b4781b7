"""Shared by the test modules: the optimizer registry and a few small utilities.

The registry has two tables, both checked against what ``gradxform.optimizers`` exports
(``test_optimizers.py::test_every_exported_optimizer_has_a_registry_entry``):

- ``OPTIMIZERS``: one ``OptimizerCase`` per named optimizer (``gx.adam``, ``gx.sgd``, ...):
  how tests construct it, which rule it chains and the per-parameter slots of that rule's
  state, its references (NumPy and the recorded torch.optim trajectories), and its
  convergence knobs. ``test_optimizers.py`` (convergence, jit == eager, dtypes, sharding,
  state layout, ...) and ``test_primitives.py`` (first steps against NumPy) read it.
- ``PRIMITIVES``: one ``PrimitiveCase`` per per-coordinate rule (``gx.scale_by_adam``,
  ``gx.ema``, ...): its state's fields and the configurations checked step by step
  against NumPy (``test_primitives.py``: first steps and state layout).

The known-minimum problems live in ``gradxform.problems``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from references import (
    ref_adadelta,
    ref_adam,
    ref_adamax,
    ref_ema,
    ref_lion,
    ref_momentum,
    ref_nadam,
    ref_radam,
    ref_rms,
    ref_rss,
    ref_sgd,
)

import gradxform as gx

REFERENCE_DIR = pathlib.Path(__file__).parent / "reference"

# --------------------------------------------------------------------------------------
# Per-coordinate rules (scale_by_*): state layout and NumPy references


@dataclass(frozen=True)
class Reference:
    """One configuration of a rule, checked step by step against a NumPy reference."""

    id: str  # the test id
    make: Callable[[], Any]  # () -> the configured transform
    numpy: Callable  # one leaf's grads per step -> [{"u": update, slot: value} per step]
    slots: tuple[str, ...]  # state fields holding a params-like tree in this configuration


@dataclass(frozen=True)
class PrimitiveCase:
    """A per-coordinate rule exported by ``gradxform.optimizers``."""

    name: str  # gx.<name>
    state_fields: tuple[str, ...]  # its state NamedTuple's fields, in order
    references: tuple[Reference, ...]  # at least one


def _primitives(*cases: PrimitiveCase) -> dict[str, PrimitiveCase]:
    return {c.name: c for c in cases}


R = Reference
PRIMITIVES = _primitives(
    PrimitiveCase(
        "scale_by_momentum",
        ("count", "velocity"),
        (
            R(
                "momentum",
                lambda: gx.scale_by_momentum(0.9),
                partial(ref_momentum, mu=0.9),
                ("velocity",),
            ),
            R(
                "momentum-dampening",
                lambda: gx.scale_by_momentum(0.9, dampening=0.3),
                partial(ref_momentum, mu=0.9, dampening=0.3),
                ("velocity",),
            ),
            R(
                "momentum-nesterov",
                lambda: gx.scale_by_momentum(0.5, nesterov=True),
                partial(ref_momentum, mu=0.5, nesterov=True),
                ("velocity",),
            ),
        ),
    ),
    PrimitiveCase(
        "ema",
        ("count", "ema"),
        (
            R(
                "ema-debias",
                lambda: gx.ema(0.8),
                partial(ref_ema, decay=0.8, debias=True),
                ("ema",),
            ),
            R(
                "ema-no-debias",
                lambda: gx.ema(0.8, debias=False),
                partial(ref_ema, decay=0.8, debias=False),
                ("ema",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_rss",
        ("sum_of_squares",),
        (
            R("rss-default", lambda: gx.scale_by_rss(), ref_rss, ("sum_of_squares",)),
            R(
                "rss-init",
                lambda: gx.scale_by_rss(initial_accumulator_value=0.1, eps=1e-3),
                partial(ref_rss, s0=0.1, eps=1e-3),
                ("sum_of_squares",),
            ),
            R(
                "rss-init-eps-in-sqrt",
                lambda: gx.scale_by_rss(initial_accumulator_value=0.1, eps=1e-3, eps_in_sqrt=True),
                partial(ref_rss, s0=0.1, eps=1e-3, eps_in_sqrt=True),
                ("sum_of_squares",),
            ),
            R(
                "rss-eps-in-sqrt",
                lambda: gx.scale_by_rss(eps=1e-3, eps_in_sqrt=True),
                partial(ref_rss, eps=1e-3, eps_in_sqrt=True),
                ("sum_of_squares",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_rms",
        ("nu", "mu"),
        (
            R(
                "rms-plain",
                lambda: gx.scale_by_rms(0.9),
                partial(ref_rms, decay=0.9, eps=1e-8),
                ("nu",),
            ),
            R(
                "rms-centered",
                lambda: gx.scale_by_rms(0.9, eps=1e-3, centered=True),
                partial(ref_rms, decay=0.9, eps=1e-3, centered=True),
                ("nu", "mu"),
            ),
            R(
                "rms-eps-in-sqrt",
                lambda: gx.scale_by_rms(0.9, eps=1e-3, eps_in_sqrt=True),
                partial(ref_rms, decay=0.9, eps=1e-3, eps_in_sqrt=True),
                ("nu",),
            ),
            R(
                "rms-centered-eps-in-sqrt",
                lambda: gx.scale_by_rms(0.9, eps=1e-3, centered=True, eps_in_sqrt=True),
                partial(ref_rms, decay=0.9, eps=1e-3, centered=True, eps_in_sqrt=True),
                ("nu", "mu"),
            ),
            R(
                "rms-initial-scale",
                lambda: gx.scale_by_rms(0.9, initial_scale=0.5),
                partial(ref_rms, decay=0.9, eps=1e-8, nu0=0.5),
                ("nu",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_adadelta",
        ("sq_avg", "delta_avg"),
        (
            R(
                "adadelta-default",
                lambda: gx.scale_by_adadelta(),
                partial(ref_adadelta, rho=0.9, eps=1e-6),
                ("sq_avg", "delta_avg"),
            ),
            R(
                "adadelta-rho0.5",
                lambda: gx.scale_by_adadelta(0.5, 1e-3),
                partial(ref_adadelta, rho=0.5, eps=1e-3),
                ("sq_avg", "delta_avg"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_adam",
        ("count", "mu", "nu", "nu_max"),
        (
            R("adam", lambda: gx.scale_by_adam(), ref_adam, ("mu", "nu")),
            R(
                "adam-no-bias-correction",
                lambda: gx.scale_by_adam(0.8, 0.5, bias_correction=False),
                partial(ref_adam, b1=0.8, b2=0.5, bias_correction=False),
                ("mu", "nu"),
            ),
            R(
                "adam-amsgrad",
                lambda: gx.scale_by_adam(0.9, 0.5, amsgrad=True),
                partial(ref_adam, b2=0.5, amsgrad=True),
                ("mu", "nu", "nu_max"),
            ),
            R(
                "adam-nesterov",
                lambda: gx.scale_by_adam(nesterov=True),
                partial(ref_adam, nesterov=True),
                ("mu", "nu"),
            ),
            R(
                "adam-nesterov-no-bias-correction",
                lambda: gx.scale_by_adam(0.8, 0.5, bias_correction=False, nesterov=True),
                partial(ref_adam, b1=0.8, b2=0.5, bias_correction=False, nesterov=True),
                ("mu", "nu"),
            ),
            R(
                "adam-eps-root",
                lambda: gx.scale_by_adam(eps_root=1e-3),
                partial(ref_adam, eps_root=1e-3),
                ("mu", "nu"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_nadam",
        ("count", "mu_product", "mu", "nu"),
        (
            R("nadam", lambda: gx.scale_by_nadam(), ref_nadam, ("mu", "nu")),
            R(
                "nadam-psi0.5",
                lambda: gx.scale_by_nadam(0.8, 0.9, 1e-6, momentum_decay=0.5),
                partial(ref_nadam, b1=0.8, b2=0.9, eps=1e-6, psi=0.5),
                ("mu", "nu"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_radam",
        ("count", "mu", "nu", "nu_max"),
        # 3 steps: never rectified at b2=0.999 (test_radam_both_branches runs both).
        (R("radam-3-steps", lambda: gx.scale_by_radam(), ref_radam, ("mu", "nu")),),
    ),
    PrimitiveCase(
        "scale_by_adamax",
        ("count", "mu", "nu"),
        (
            R("adamax", lambda: gx.scale_by_adamax(), ref_adamax, ("mu", "nu")),
            R(
                "adamax-b2-0.5",
                lambda: gx.scale_by_adamax(0.8, 0.5, 1e-3),
                partial(ref_adamax, b1=0.8, b2=0.5, eps=1e-3),
                ("mu", "nu"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_lion",
        ("mu",),
        (
            R("lion", lambda: gx.scale_by_lion(), ref_lion, ("mu",)),
            R(
                "lion-b1-0.5",
                lambda: gx.scale_by_lion(0.5, 0.9),
                partial(ref_lion, b1=0.5, b2=0.9),
                ("mu",),
            ),
        ),
    ),
)
del R

# --------------------------------------------------------------------------------------
# Named optimizers


@dataclass(frozen=True)
class OptimizerCase:
    """A named optimizer exported by ``gradxform.optimizers``: what the tests need."""

    name: str  # gx.<name>, the constructor
    quad: dict  # kwargs converging on problems.bowl_tree in 2,000 steps; the default config
    rosen: dict  # kwargs converging on problems.rosenbrock_tree in 20,000 steps
    primitive: str | None  # the PRIMITIVES rule it chains (its state is state[primitive])
    slots: tuple[str, ...]  # fields of that state holding a params-like tree, for `quad`
    # NumPy direction at the `quad` hyperparameters (the update is -learning_rate times
    # its "u"); None only where parity_cases cover the optimizer.
    reference: Callable | None
    # Its recorded reference cases, "<source>-<case>" for reference/<source>_trajectories.json
    # (torch.optim, schedulefree, ...): the ids of test_reference_parity.py.
    parity_cases: tuple[str, ...] = ()
    rosen_tol: float = 1e-3  # max |x - x*| after the Rosenbrock run
    complex_tol: float = 2e-3  # max |z - c| after 3,000 steps on a complex quadratic

    def make(self, which: str = "quad", **overrides):
        """The optimizer with the `quad` (or `rosen`) kwargs, updated by ``overrides``."""
        return getattr(gx, self.name)(**{**getattr(self, which), **overrides})


def _optimizers(*cases: OptimizerCase) -> dict[str, OptimizerCase]:
    return {c.name: c for c in cases}


_MOMENTUM = partial(ref_momentum, mu=0.9)
OPTIMIZERS = _optimizers(
    OptimizerCase(
        "sgd",
        quad=dict(learning_rate=0.15),
        rosen=dict(learning_rate=1e-3),
        primitive=None,  # momentum=None: learning rate only, no per-parameter state
        slots=(),
        reference=ref_sgd,
        parity_cases=(
            "torch-sgd_plain",
            "torch-sgd_momentum",
            "torch-sgd_momentum_dampening",
            "torch-sgd_nesterov",
            "torch-sgd_momentum_wd",
        ),
    ),
    OptimizerCase(
        "momentum",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=5e-4),
        primitive="scale_by_momentum",
        slots=("velocity",),
        reference=_MOMENTUM,
    ),
    OptimizerCase(
        "nesterov",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=5e-4),
        primitive="scale_by_momentum",
        slots=("velocity",),
        reference=partial(ref_momentum, mu=0.9, nesterov=True),
    ),
    # Learning rate first, then momentum: the velocity holds -lr g terms (Polyak's form).
    OptimizerCase(
        "heavy_ball",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=5e-4),
        primitive="scale_by_momentum",
        slots=("velocity",),
        reference=_MOMENTUM,
    ),
    OptimizerCase(
        "adagrad",
        quad=dict(learning_rate=1.0),
        rosen=dict(learning_rate=0.3),
        primitive="scale_by_rss",
        slots=("sum_of_squares",),
        reference=ref_rss,
        parity_cases=("torch-adagrad_plain", "torch-adagrad_decay_wd_init"),
    ),
    # Adadelta crawls along the curved Rosenbrock valley (its effective step grows with
    # its own past steps): 20k steps get within 0.06 of (1, 1) from a loss of 24.
    OptimizerCase(
        "adadelta",
        quad=dict(learning_rate=1.0),
        rosen=dict(learning_rate=0.1),
        primitive="scale_by_adadelta",
        slots=("sq_avg", "delta_avg"),
        reference=partial(ref_adadelta, rho=0.9, eps=1e-6),
        parity_cases=("torch-adadelta_default", "torch-adadelta_rho_eps_wd"),
        rosen_tol=0.1,
    ),
    OptimizerCase(
        "rmsprop",
        quad=dict(learning_rate=0.01),
        rosen=dict(learning_rate=3e-4, decay=0.9),
        primitive="scale_by_rms",
        slots=("nu",),  # mu only when centered
        reference=partial(ref_rms, decay=0.99, eps=1e-8),
        parity_cases=(
            "torch-rmsprop_plain",
            "torch-rmsprop_centered",
            "torch-rmsprop_momentum",
            "torch-rmsprop_centered_momentum_wd",
        ),
    ),
    OptimizerCase(
        "adam",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.02),
        primitive="scale_by_adam",
        slots=("mu", "nu"),
        reference=ref_adam,
        parity_cases=(
            "torch-adam_plain",
            "torch-adam_amsgrad",
            "torch-adam_wd",
            "torch-adam_betas_eps",
        ),
    ),
    OptimizerCase(
        "adamw",
        quad=dict(learning_rate=0.05, weight_decay=0.0),
        rosen=dict(learning_rate=0.02, weight_decay=0.0),
        primitive="scale_by_adam",
        slots=("mu", "nu"),
        reference=ref_adam,
        parity_cases=("torch-adamw_wd", "torch-adamw_amsgrad_wd"),
    ),
    OptimizerCase(
        "amsgrad",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.05),
        primitive="scale_by_adam",
        slots=("mu", "nu", "nu_max"),
        reference=partial(ref_adam, amsgrad=True),
    ),
    OptimizerCase(
        "nadam",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=3e-3),
        primitive="scale_by_nadam",
        slots=("mu", "nu"),
        reference=ref_nadam,
        parity_cases=("torch-nadam_plain", "torch-nadam_wd"),
    ),
    OptimizerCase(
        "radam",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=5e-3),
        primitive="scale_by_radam",
        slots=("mu", "nu"),
        reference=ref_radam,
        parity_cases=("torch-radam_plain", "torch-radam_wd"),
    ),
    OptimizerCase(
        "adamax",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.05),
        primitive="scale_by_adamax",
        slots=("mu", "nu"),
        reference=ref_adamax,
        parity_cases=("torch-adamax_plain", "torch-adamax_wd"),
    ),
    # Lion moves every coordinate by exactly lr: it ends in an lr-sized neighbourhood.
    OptimizerCase(
        "lion",
        quad=dict(learning_rate=0.01),
        rosen=dict(learning_rate=1e-3),
        primitive="scale_by_lion",
        slots=("mu",),
        reference=ref_lion,  # no torch.optim equivalent
        complex_tol=2e-2,
    ),
)


def parity_cases() -> dict[str, str]:
    """Recorded reference cases: "<source>-<case>" -> the gradxform optimizer it runs."""
    out = {}
    for path in sorted(REFERENCE_DIR.glob("*_trajectories.json")):
        source = path.name.removesuffix("_trajectories.json")
        for case in json.loads(path.read_text())["cases"]:
            out[f"{source}-{case['name']}"] = case["gradxform"]["optimizer"]
    return out


def slot_fields(state: Any, params: Any) -> tuple[str, ...]:
    """The fields of a NamedTuple state that hold a tree shaped like ``params``."""
    if not hasattr(type(state), "_fields"):
        return ()
    want = jax.tree_util.tree_structure(params)
    shapes = [jnp.shape(x) for x in jax.tree_util.tree_leaves(params)]

    def like_params(value):
        leaves = jax.tree_util.tree_leaves(value)
        return (
            jax.tree_util.tree_structure(value) == want and [jnp.shape(x) for x in leaves] == shapes
        )

    return tuple(f for f in state._fields if like_params(getattr(state, f)))


def run(tx, loss, params, steps):
    """``steps`` updates of ``tx`` on ``loss`` in one jitted fori_loop; returns params."""

    @jax.jit
    def go(params):
        state = tx.init(params)

        def body(_, carry):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return _apply(p, u), s

        return jax.lax.fori_loop(0, steps, body, (params, state))[0]

    return go(params)


def _apply(p, u):
    return gx.apply_updates(p, u)


def max_dist(a, b):
    return max(
        float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Stand-in for flax's TrainState: the transform is static metadata (hashed by jit)."""

    params: Any
    opt_state: Any
    tx: Any = dataclasses.field(metadata=dict(static=True))


def make_train_step(traces: list):
    """A jitted TrainState step that appends to ``traces`` each time it is traced."""

    @jax.jit
    def train_step(ts, g):
        traces.append(None)
        u, s = ts.tx.update(g, ts.opt_state, ts.params)
        return TrainState(_apply(ts.params, u), s, ts.tx)

    return train_step
