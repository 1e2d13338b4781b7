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
import math
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from references import (
    ref_adadelta,
    ref_adafactor,
    ref_adam,
    ref_adamax,
    ref_adan,
    ref_asgd,
    ref_belief,
    ref_dadapt_adam,
    ref_dog,
    ref_ema,
    ref_lamb,
    ref_lars,
    ref_lion,
    ref_momentum,
    ref_muon,
    ref_nadam,
    ref_novograd,
    ref_prodigy,
    ref_radam,
    ref_rms,
    ref_rprop,
    ref_rss,
    ref_schedule_free,
    ref_sgd,
    ref_sm3,
    ref_trust_ratio,
    ref_yogi,
)

import gradxform as gx

REFERENCE_DIR = pathlib.Path(__file__).parent / "reference"


def _muon_row(shape):
    """Muon's declared 2-D view of a leaf that is not a matrix: one row (ref_muon's)."""
    return (1, math.prod(shape))


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
    # Global rules (one step size from sums over every leaf): the references take whole
    # trees and params that advance by each update (test_primitives' takes_trees). d0 and
    # reps_rel are large here: with 1e-6 the first steps are 1e-6 long and x - x0 would
    # carry a 1-ulp difference of x at 1e-10 relative into the estimate. Prodigy's d grows
    # at step 2 with these d_coef (test_parameter_free.py checks d); D-Adaptation's d needs
    # more correlated gradients than GRADS to grow (test_parameter_free.py has them).
    PrimitiveCase(
        "scale_by_prodigy",
        ("count", "k", "d", "d_max", "d_numerator", "mu", "nu", "s", "p0"),
        (
            R(
                "prodigy-d0-0.5-coef-10",
                lambda: gx.scale_by_prodigy(d0=0.5, d_coef=10.0),
                partial(ref_prodigy, d0=0.5, d_coef=10.0),
                ("mu", "nu", "s", "p0"),
            ),
            R(
                "prodigy-wd-bias-correction",
                lambda: gx.scale_by_prodigy(
                    weight_decay=0.1, use_bias_correction=True, d0=0.3, d_coef=10.0
                ),
                partial(ref_prodigy, wd=0.1, bias_correction=True, d0=0.3, d_coef=10.0),
                ("mu", "nu", "s", "p0"),
            ),
            R(
                "prodigy-safeguard-growth",
                lambda: gx.scale_by_prodigy(
                    0.5,
                    0.8,
                    0.9,
                    beta3=0.7,
                    safeguard_warmup=True,
                    d0=0.2,
                    d_coef=20.0,
                    growth_rate=1.5,
                ),  # fmt: skip
                partial(
                    ref_prodigy,
                    lr=0.5,
                    b1=0.8,
                    b2=0.9,
                    beta3=0.7,
                    safeguard=True,
                    d0=0.2,
                    d_coef=20.0,
                    growth=1.5,
                ),  # fmt: skip
                ("mu", "nu", "s", "p0"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_dadapt_adam",
        ("count", "k", "d", "numerator_weighted", "mu", "nu", "s"),
        (
            R(
                "dadapt-adam",
                lambda: gx.scale_by_dadapt_adam(),
                ref_dadapt_adam,
                ("mu", "nu", "s"),
            ),
            R(
                "dadapt-adam-lr-wd-bias-correction-growth",
                lambda: gx.scale_by_dadapt_adam(
                    0.5, weight_decay=0.1, use_bias_correction=True, d0=0.1, growth_rate=2.0
                ),
                partial(ref_dadapt_adam, lr=0.5, wd=0.1, bias_correction=True, d0=0.1, growth=2.0),
                ("mu", "nu", "s"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_dog",
        ("count", "rbar", "g2_sum", "x0"),
        (
            R("dog", lambda: gx.scale_by_dog(0.1), partial(ref_dog, reps_rel=0.1), ("x0",)),
            R(
                "dog-init-eta",
                lambda: gx.scale_by_dog(init_eta=0.5, eps=1e-3),
                partial(ref_dog, init_eta=0.5, eps=1e-3),
                ("x0",),
            ),
            R(
                "ldog",
                lambda: gx.scale_by_dog(0.1, layer_wise=True),
                partial(ref_dog, reps_rel=0.1, layer=True),
                ("x0",),
            ),
        ),
    ),
    # Layer-wise: the references get each leaf's parameter (test_primitives' PARAMS).
    PrimitiveCase(
        "scale_by_trust_ratio",
        (),
        (
            R("trust-ratio", lambda: gx.scale_by_trust_ratio(), ref_trust_ratio, ()),
            R(
                # min_norm lifts ||p_a|| = 1.58 and step 1's ||g_a|| = 2.24; ||p_b|| = 3.74
                # is clipped to max_param_norm.
                "trust-ratio-min-max-coef-eps",
                lambda: gx.scale_by_trust_ratio(
                    2.5, trust_coefficient=0.1, eps=1e-3, max_param_norm=3.0
                ),
                partial(
                    ref_trust_ratio,
                    trust_coefficient=0.1,
                    eps=1e-3,
                    min_norm=2.5,
                    max_param_norm=3.0,
                ),
                (),
            ),
            R(
                "trust-ratio-lars-decay",
                lambda: gx.scale_by_trust_ratio(trust_coefficient=0.01, weight_decay=0.1),
                partial(ref_trust_ratio, trust_coefficient=0.01, wd=0.1),
                (),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_novograd",
        ("count", "mu", "nu"),  # nu: one scalar per leaf (checked in test_novograd.py)
        (
            R("novograd", lambda: gx.scale_by_novograd(), ref_novograd, ("mu",)),
            R(
                "novograd-optax-betas-eps-root",
                lambda: gx.scale_by_novograd(0.9, 0.25, 1e-6, 1e-3),
                partial(ref_novograd, b1=0.9, b2=0.25, eps=1e-6, eps_root=1e-3),
                ("mu",),
            ),
            R(
                "novograd-decay-averaging",
                lambda: gx.scale_by_novograd(weight_decay=0.1, grad_averaging=True),
                partial(ref_novograd, wd=0.1, grad_averaging=True),
                ("mu",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_muon",
        ("mu",),
        (
            R("muon", lambda: gx.scale_by_muon(reshape=_muon_row), ref_muon, ("mu",)),
            R(
                "muon-plain-match-rms-3-steps",
                lambda: gx.scale_by_muon(
                    momentum=0.3,
                    nesterov=False,
                    ns_steps=3,
                    eps=1e-3,
                    adjust_lr_fn="match_rms_adamw",
                    reshape=_muon_row,
                ),
                partial(
                    ref_muon,
                    momentum=0.3,
                    nesterov=False,
                    ns_steps=3,
                    eps=1e-3,
                    adjust="match_rms_adamw",
                ),
                ("mu",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_rprop",
        ("prev", "step_size"),
        (
            R("rprop", lambda: gx.scale_by_rprop(), ref_rprop, ("prev", "step_size")),
            R(
                "rprop-bounded",
                lambda: gx.scale_by_rprop(
                    eta_minus=0.3, eta_plus=1.5, min_step_size=0.6, max_step_size=1.4
                ),
                partial(ref_rprop, eta_minus=0.3, eta_plus=1.5, lo=0.6, hi=1.4),
                ("prev", "step_size"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_asgd",
        ("count", "ax"),
        (
            R(
                "asgd-averaging",
                lambda: gx.scale_by_asgd(0.1, 0.01, 0.75, 0.0, 0.1),
                partial(ref_asgd, lr=0.1, lambd=0.01, alpha=0.75, t0=0.0, wd=0.1),
                ("ax",),
            ),
            R(
                "asgd-default",
                lambda: gx.scale_by_asgd(),
                ref_asgd,
                ("ax",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_belief",
        ("count", "mu", "nu"),
        (
            R("belief", lambda: gx.scale_by_belief(), ref_belief, ("mu", "nu")),
            R(
                "belief-b2-0.5-eps",
                lambda: gx.scale_by_belief(0.8, 0.5, 1e-3, 1e-4),
                partial(ref_belief, b1=0.8, b2=0.5, eps=1e-3, eps_root=1e-4),
                ("mu", "nu"),
            ),
            # 3 steps: rho_t < 5, the SGD branch (test_adamlike.py runs both branches).
            R(
                "belief-rectify",
                lambda: gx.scale_by_belief(rectify=True),
                partial(ref_belief, rectify=True),
                ("mu", "nu"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_yogi",
        ("count", "mu", "nu"),
        (
            R("yogi", lambda: gx.scale_by_yogi(), ref_yogi, ("mu", "nu")),
            R(
                "yogi-b2-0.5-init",
                lambda: gx.scale_by_yogi(0.8, 0.5, 1e-6, initial_accumulator_value=0.5),
                partial(ref_yogi, b1=0.8, b2=0.5, eps=1e-6, v0=0.5),
                ("mu", "nu"),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_adan",
        ("count", "mu", "delta", "nu", "prev_grad"),
        (
            R("adan", lambda: gx.scale_by_adan(), ref_adan, ("mu", "delta", "nu", "prev_grad")),
            R(
                "adan-betas",
                lambda: gx.scale_by_adan(0.9, 0.5, 0.999, 1e-6),
                partial(ref_adan, b1=0.9, b2=0.5, b3=0.999, eps=1e-6),
                ("mu", "delta", "nu", "prev_grad"),
            ),
        ),
    ),
    # The accumulators (a tuple per leaf) are compared in test_adamlike.py.
    PrimitiveCase(
        "scale_by_sm3",
        ("accumulators", "momentum_buffer"),
        (
            R("sm3", lambda: gx.scale_by_sm3(), ref_sm3, ()),
            R(
                "sm3-momentum-beta",
                lambda: gx.scale_by_sm3(momentum=0.9, beta=0.5, eps=1e-8),
                partial(ref_sm3, momentum=0.9, beta=0.5, eps=1e-8),
                ("momentum_buffer",),
            ),
        ),
    ),
    PrimitiveCase(
        "scale_by_schedule_free",
        ("count", "lr_max", "weight_sum", "x_minus_y", "nu"),
        (
            R(
                "schedule-free-sgd",
                lambda: gx.scale_by_schedule_free(0.5),
                partial(ref_schedule_free, lr=0.5),
                ("x_minus_y",),
            ),
            R(
                "schedule-free-sgd-warmup-r",
                lambda: gx.scale_by_schedule_free(
                    0.5, b1=0.8, warmup_steps=2, r=1.0, weight_lr_power=1.0
                ),
                partial(
                    ref_schedule_free, lr=0.5, b1=0.8, warmup_steps=2, r=1.0, weight_lr_power=1.0
                ),
                ("x_minus_y",),
            ),
            R(
                "schedule-free-adam",
                lambda: gx.scale_by_schedule_free(0.1, b2=0.999),
                partial(ref_schedule_free, lr=0.1, b2=0.999),
                ("x_minus_y", "nu"),
            ),
            R(
                "schedule-free-adam-warmup-r",
                lambda: gx.scale_by_schedule_free(
                    0.1, b1=0.5, b2=0.5, eps=1e-3, warmup_steps=3, r=0.5
                ),
                partial(ref_schedule_free, lr=0.1, b1=0.5, b2=0.5, eps=1e-3, warmup_steps=3, r=0.5),
                ("x_minus_y", "nu"),
            ),
        ),
    ),
    # The slots hold None for leaves of the other kind (compared in test_adafactor.py).
    PrimitiveCase(
        "scale_by_adafactor",
        ("count", "row_var", "col_var", "variance"),
        (
            R("adafactor", lambda: gx.scale_by_adafactor(), ref_adafactor, ()),
            R(
                "adafactor-decay-eps-d",
                lambda: gx.scale_by_adafactor(-0.5, 0.3, 1.5),
                partial(ref_adafactor, beta2_decay=-0.5, eps1=0.3, d=1.5),
                (),
            ),
            R(
                "adafactor-no-clipping",
                lambda: gx.scale_by_adafactor(d=None),
                partial(ref_adafactor, d=None),
                (),
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
    quad_tol: float = 1e-4  # max |x - x*| after the bowl_tree run (2,000 steps)

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
    # Parameter-free step sizes (learning_rate 1 is their default: it multiplies the learned
    # step size). The references hold params fixed here (x = x0: the estimates stay at d0).
    # d0 / reps_rel 1e-3 (default 1e-6): a first step of 1e-6 * |x| is below the 1e-5
    # relative change test_none_and_non_array_leaves_untouched looks for. On Rosenbrock a
    # constant lr leaves Prodigy and D-Adaptation (Adam steps of the learned size d) 0.1
    # and 0.25 from (1, 1); the cosine decay their authors recommend lands on it. D-Adapted
    # Adam at lr 1 keeps bouncing 2e-4 around the bowl's minimum (4e-2 on the complex one).
    OptimizerCase(
        "prodigy",
        quad=dict(learning_rate=1.0, d0=1e-3),
        rosen=dict(learning_rate=gx.cosine_decay_schedule(1.0, 20_000)),
        primitive="scale_by_prodigy",
        slots=("mu", "nu", "s", "p0"),
        reference=partial(ref_prodigy, d0=1e-3),
        parity_cases=tuple(
            f"prodigy-{c}"
            for c in (
                "defaults",
                "d0_1e-2",
                "decoupled_wd",
                "decoupled_wd_d0_1e-2",
                "coupled_wd",
                "bias_correction",
                "safeguard_lr0.5",
                "beta3_coef_growth",
                "no_momentum",
            )
        ),  # fmt: skip
    ),
    OptimizerCase(
        "dadapt_adamw",
        quad=dict(learning_rate=0.1, d0=1e-3),
        rosen=dict(learning_rate=gx.cosine_decay_schedule(1.0, 20_000)),
        primitive="scale_by_dadapt_adam",
        slots=("mu", "nu", "s"),
        reference=partial(ref_dadapt_adam, d0=1e-3, lr=0.1),
        parity_cases=tuple(
            f"dadaptation-{c}"
            for c in (
                "defaults",
                "d0_1e-3",
                "decoupled_wd",
                "coupled_wd",
                "bias_correction",
                "lr0.5_growth",
            )
        ),  # fmt: skip
    ),
    OptimizerCase(
        "dog",
        quad=dict(learning_rate=1.0, reps_rel=1e-3),
        rosen=dict(learning_rate=1.0),
        primitive="scale_by_dog",
        slots=("x0",),
        reference=partial(ref_dog, reps_rel=1e-3),
        parity_cases=tuple(
            f"dog-dog_{c}" for c in ("defaults", "reps_1e-3", "wd", "init_eta", "lr0.5_eps")
        ),
    ),
    OptimizerCase(
        "ldog",
        quad=dict(learning_rate=1.0, reps_rel=1e-3),
        rosen=dict(learning_rate=1.0),
        primitive="scale_by_dog",
        slots=("x0",),
        reference=partial(ref_dog, reps_rel=1e-3, layer=True),
        parity_cases=tuple(f"dog-ldog_{c}" for c in ("defaults", "wd_reps", "init_eta")),
    ),
    # DP-SGD without noise (noise_multiplier=0: the noise floor would keep it a noise-sized
    # distance from x*, and the first-step test compares exact numbers) and with a clip
    # norm above every gradient here, so the registry sees plain SGD (the registry feeds
    # batch gradients: one example, B = 1). Clipping, noise and per-example batches are
    # tested in test_dpsgd.py.
    OptimizerCase(
        "dpsgd",
        quad=dict(learning_rate=0.15, l2_norm_clip=1e3, noise_multiplier=0.0, seed=1),
        rosen=dict(learning_rate=1e-3, l2_norm_clip=1e3, noise_multiplier=0.0, seed=1),
        primitive=None,  # momentum=None: no per-parameter state
        slots=(),
        reference=ref_sgd,
    ),
    # LAMB and LARS move a rescaled leaf by lr tc ||p|| whatever the gradient: at a constant
    # lr they end in a neighbourhood of about one such step (LAMB lr 5e-3: 0.017 from x*
    # on the bowl, whose ||x*_b|| = 3.2; 0.018 on the complex quadratic, ||c|| = 3.9).
    # A scalar leaf under the ratio moves by lr |x| and never changes sign (Rosenbrock's x
    # goes from -1.2 to 1), so `rosen` rescales only leaves with ndim > 1, as
    # pytorch_optimizer's LARS does: on Rosenbrock's scalars that is Adam / momentum SGD.
    OptimizerCase(
        "lamb",
        quad=dict(learning_rate=5e-3),
        rosen=dict(learning_rate=0.02, trust_ratio_mask=gx.where(lambda path, p: p.ndim > 1)),
        primitive="scale_by_adam",
        slots=("mu", "nu"),
        reference=ref_lamb,
        parity_cases=(
            "pytorch_optimizer_largebatch-lamb_plain",
            "pytorch_optimizer_largebatch-lamb_wd_betas_eps",
            "pytorch_optimizer_largebatch-lamb_wd_foreach",
        ),
        quad_tol=0.05,
        complex_tol=0.05,
    ),
    OptimizerCase(
        "lars",
        quad=dict(learning_rate=0.01, trust_coefficient=0.1),  # 1.3e-3 from x*
        rosen=dict(learning_rate=5e-4, trust_ratio_mask=gx.where(lambda path, p: p.ndim > 1)),
        primitive="scale_by_momentum",
        slots=("velocity",),
        reference=partial(ref_lars, mu=0.9, tc=0.1),
        parity_cases=(
            "pytorch_optimizer_largebatch-lars_momentum",
            "pytorch_optimizer_largebatch-lars_momentum_wd",
            "pytorch_optimizer_largebatch-lars_nesterov_wd",
            "pytorch_optimizer_largebatch-lars_no_momentum_wd",
        ),
        quad_tol=0.01,
        complex_tol=0.02,  # 4.4e-3 from c
    ),
    OptimizerCase(
        "novograd",
        quad=dict(learning_rate=3e-3),
        rosen=dict(learning_rate=3e-4),
        primitive="scale_by_novograd",
        slots=("mu",),  # nu holds one scalar per leaf
        reference=ref_novograd,
        parity_cases=(
            "pytorch_optimizer_largebatch-novograd_plain",
            "pytorch_optimizer_largebatch-novograd_wd_optax_betas",
            "pytorch_optimizer_largebatch-novograd_grad_averaging_wd",
            "pytorch_optimizer_largebatch-novograd_decoupled_wd",
        ),
    ),
    # Muon's orthogonalised step has a fixed size (singular values ~0.7-1.2 times lr), so
    # at a constant lr it ends in an lr-sized neighbourhood (lr 1e-2: 3.6e-3 from x* on the
    # bowl, 5.6e-3 on Rosenbrock). These configs use eps=1e3 above the momentum's norm
    # near the optimum, where NS(M) ~ 485 M / eps is linear in M (momentum SGD), far from
    # it the usual orthogonalised step. The problems' leaves are vectors and scalars:
    # reshape declares each a (1, n) row (a matrix Muon accepts).
    OptimizerCase(
        "muon",
        quad=dict(learning_rate=0.2, weight_decay=None, eps=1e3, reshape=_muon_row),
        rosen=dict(learning_rate=0.01, weight_decay=None, eps=1e3, reshape=_muon_row),
        primitive="scale_by_muon",
        slots=("mu",),
        reference=partial(ref_muon, eps=1e3),
        parity_cases=(
            "torch_new-muon_nesterov",
            "torch_new-muon_plain_no_wd",
            "torch_new-muon_match_rms_adamw_3_steps",
            "torch_new-muon_original_low_momentum",
            "torch_new-muon_bf16",
        ),
    ),
    OptimizerCase(
        "rprop",
        quad=dict(learning_rate=0.01),
        # torch's floor 1e-6 on the step sizes leaves Rprop 1.04e-3 from (1, 1) after 20k
        # steps (it zigzags down the valley at the floor); 1e-7 reaches 8e-5.
        rosen=dict(learning_rate=0.01, step_sizes=(1e-7, 50)),
        primitive="scale_by_rprop",
        slots=("prev", "step_size"),
        reference=ref_rprop,
        parity_cases=("torch_new-rprop_default", "torch_new-rprop_bounded"),
    ),
    # lambd shrinks p towards 0 (p (1 - lambd eta)): the fixed point is off x* by about
    # lambd |x*| / curvature, so the bowl run uses lambd=1e-6 (torch's 1e-4: 1.0e-4 away).
    OptimizerCase(
        "asgd",
        quad=dict(learning_rate=0.15, lambd=1e-6),
        rosen=dict(learning_rate=1e-3),
        primitive="scale_by_asgd",
        slots=("ax",),
        reference=partial(ref_asgd, lr=0.15, lambd=1e-6, direction=True),
        parity_cases=(
            "torch_new-asgd_no_averaging",
            "torch_new-asgd_t0_5_wd",
            "torch_new-asgd_t0_0",
        ),
    ),
    OptimizerCase(
        "adabelief",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.02),
        primitive="scale_by_belief",
        slots=("mu", "nu"),
        reference=ref_belief,
        parity_cases=(
            "adamlike-adabelief_plain",
            "adamlike-adabelief_betas_eps_wd",
            "adamlike-adabelief_coupled_wd",
            "adamlike-adabelief_rectify",
            "adamlike-adabelief_rectify_wd",
        ),
    ),
    OptimizerCase(
        "yogi",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.02),
        primitive="scale_by_yogi",
        slots=("mu", "nu"),
        reference=ref_yogi,
        parity_cases=(
            "adamlike-yogi_plain",
            "adamlike-yogi_b2_init_eps",
            "adamlike-yogi_decoupled_wd",
            "adamlike-yogi_coupled_wd",
        ),
    ),
    OptimizerCase(
        "adan",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.01),
        primitive="scale_by_adan",
        slots=("mu", "delta", "nu", "prev_grad"),
        reference=ref_adan,
        parity_cases=("adamlike-adan_plain", "adamlike-adan_betas", "adamlike-adan_wd"),
    ),
    OptimizerCase(
        "sm3",
        quad=dict(learning_rate=1.0),
        rosen=dict(learning_rate=0.3),
        primitive="scale_by_sm3",
        slots=(),  # momentum=None: no momentum buffer; the accumulators are not params-like
        reference=ref_sm3,
        parity_cases=("adamlike-sm3_plain", "adamlike-sm3_momentum", "adamlike-sm3_beta_momentum"),
    ),
    # The params are y (the gradient point); the reference is the update over -lr.
    # rosen: r = 2 weights the late iterates more (uniform weights, r = 0, keep the
    # average 0.01-0.07 behind on the curved valley after 20k steps at a stable lr).
    OptimizerCase(
        "schedule_free_sgd",
        quad=dict(learning_rate=0.1),
        rosen=dict(learning_rate=4e-3, r=2.0),
        primitive="scale_by_schedule_free",
        slots=("x_minus_y",),
        reference=partial(ref_schedule_free, lr=0.1, per_lr=True),
        parity_cases=(
            "schedulefree-sgd_plain",
            "schedulefree-sgd_warmup_wd",
            "schedulefree-sgd_r_power",
        ),
    ),
    OptimizerCase(
        "schedule_free_adamw",
        quad=dict(learning_rate=0.05),
        rosen=dict(learning_rate=0.01, b1=0.95),
        primitive="scale_by_schedule_free",
        slots=("x_minus_y", "nu"),
        reference=partial(ref_schedule_free, lr=0.05, b2=0.999, per_lr=True),
        parity_cases=(
            "schedulefree-adamw_plain",
            "schedulefree-adamw_warmup_wd",
            "schedulefree-adamw_r_betas",
        ),
    ),
    # quad: eps2 = 2 exceeds RMS(p) on bowl_tree's path and on test_primitives' PARAMS,
    # and lr <= 1/sqrt(t) on the steps compared, so the step is exactly -lr * 2 * u there.
    # rosen: the relative step min(lr, 1/sqrt(t)) decays, so, like Adadelta, Adafactor
    # crawls along the curved valley: 20k steps end 0.035 from (1, 1) (from a loss of 24).
    OptimizerCase(
        "adafactor",
        quad=dict(learning_rate=0.05, eps=(None, 2.0)),
        rosen=dict(learning_rate=0.05),
        primitive="scale_by_adafactor",
        slots=(),  # factored (row_var, col_var) or None-holding trees: none like params
        reference=partial(ref_adafactor, scale=2.0),
        parity_cases=(
            "adafactor-default",
            "adafactor-wd",
            "adafactor-capped_decay_d",
            "adafactor-eps1_eps2_wd_capped",
            "adafactor-no_clipping",
        ),
        rosen_tol=0.05,
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
