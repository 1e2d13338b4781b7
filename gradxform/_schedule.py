"""The ``Schedule`` base class and the helpers every schedule shares (``schedules``
holds the schedules themselves): the step count as a float, step-count checks,
boundary/value pieces, transition progress and cosine annealing."""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax.numpy as jnp

from ._checks import check_hparam
from ._leafwise import scalar_dtype
from ._module import Module


class Schedule(Module):
    """Base class: ``schedule(count)`` returns the value at step ``count``."""

    def __call__(self, count: Any) -> Any:
        raise NotImplementedError


def step_value(count: Any) -> Any:
    return jnp.asarray(count).astype(scalar_dtype())


def check_steps(owner: str, name: str, value: Any, *, allow_zero: bool = False) -> None:
    check_hparam(owner, name, value, low=0, low_open=not allow_zero)


def check_pieces(obj: Any, owner: str, pieces: str) -> tuple:
    """Freeze ``obj.boundaries`` and ``obj.<pieces>`` to tuples and check they fit.

    Boundaries must be strictly increasing non-negative integers, one fewer than pieces.
    """
    try:
        b, v = tuple(obj.boundaries), tuple(getattr(obj, pieces))
    except TypeError as e:
        raise TypeError(f"{owner}: boundaries and {pieces} must be sequences ({e})") from None
    object.__setattr__(obj, "boundaries", b)
    object.__setattr__(obj, pieces, v)
    if len(v) != len(b) + 1:
        raise ValueError(
            f"{owner}: need len({pieces}) == len(boundaries) + 1, got {len(v)} {pieces} for "
            f"{len(b)} boundaries"
        )

    def step_number(x: Any) -> bool:  # a Python or NumPy integer (or integral float), not a bool
        # Tested apart: mypy's numbers.Real admits neither bool nor int(x), so narrowing
        # x to it would make the rest of the test unreachable to the type checker.
        real = isinstance(x, numbers.Real) and not isinstance(x, bool)
        return real and math.isfinite(x) and int(x) == x

    if (
        not all(map(step_number, b))
        or any(x < 0 for x in b)
        or any(x >= y for x, y in zip(b, b[1:]))
    ):
        raise ValueError(
            f"{owner}: boundaries must be strictly increasing non-negative integers, got {b}"
        )
    return v


def progress(count, begin, steps):
    """Fraction of a transition done, clipped to [0, 1]."""
    return jnp.clip((step_value(count) - begin) / steps, 0.0, 1.0)


def cos_anneal(start, end, frac):
    return end + (start - end) * 0.5 * (1 + jnp.cos(math.pi * frac))
