"""Counting XLA compilations, for the "no recompile" claims of the integration tests.

``count_compiles("step")`` counts the backend compilations JAX reports (through
``jax.monitoring``) for the jitted function named ``step`` (``jit(step)``): the same
event for ``jax.jit``, ``eqx.filter_jit`` and ``nnx.jit``. A compilation follows every
retrace with a new signature, so a count of 1 after several calls means one trace and one
compile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"


class Counter:
    def __init__(self, name: str):
        self.name = f"jit({name})"
        self.n = 0

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == _EVENT and kwargs.get("fun_name") == self.name:
            self.n += 1


@contextlib.contextmanager
def count_compiles(name: str) -> Iterator[Counter]:
    counter = Counter(name)
    jax.monitoring.register_event_duration_secs_listener(counter)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(counter)
