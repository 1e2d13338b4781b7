"""Docstrings: every ``>>>`` example in the package runs, every public transform has one.

(a) Each module under ``gradxform/`` is doctested (one case per module), with the names
``gx``, ``jax``, ``jnp`` and ``np`` available, under the strict environment of conftest.
(b) Every named optimizer, ``scale_by_*`` primitive, wrapper and generic transform
exported by ``gradxform`` shows an example and documents its arguments in an ``Args:``
section, one entry per argument in the signature's order.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

GLOBS = {"gx": gx, "jax": jax, "jnp": jnp, "np": np}
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

MODULES = sorted(
    [gx.__name__]
    + [info.name for info in pkgutil.walk_packages(gx.__path__, prefix=gx.__name__ + ".")]
)

# The examples cover the public API (about 400 lines when written), not a handful of
# functions: a large drop means examples were lost.
MIN_EXAMPLES = 300


def _doctests(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    # Only the four names: an example must not lean on the module's own imports.
    return [t for t in finder.find(module, globs=dict(GLOBS)) if t.examples]


@pytest.mark.parametrize("module_name", MODULES)
def test_examples_run(module_name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in _doctests(module_name):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)


def test_many_examples():
    total = sum(len(t.examples) for name in MODULES for t in _doctests(name))
    assert total >= MIN_EXAMPLES, total


OPTIMIZERS = [
    "sgd",
    "momentum",
    "nesterov",
    "heavy_ball",
    "ema",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adam",
    "adamw",
    "amsgrad",
    "nadam",
    "adamax",
    "radam",
    "lion",
    "lbfgs",
    "conjugate_gradient",
    "gradient_descent_linesearch",
]
WRAPPERS = [
    "masked",
    "freeze",
    "partition",
    "apply_if_finite",
    "conditionally_transform",
    "accumulate",
    "lookahead",
    "reduce_on_plateau",
    "project",
    "keep_params_nonnegative",
    "monitor",
]
GENERIC = [
    "chain",
    "clip",
    "clip_by_global_norm",
    "add_decayed_weights",
    "add_l1_subgradient",
    "proximal_l1",
    "add_noise",
    "scale",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "scale_by_sign",
    "centralize",
    "minimize",
    "backtracking_linesearch",
    "zoom_linesearch",
]
PRIMITIVES = sorted(n for n in dir(gx) if n.startswith("scale_by_"))
DOCUMENTED = sorted(set(OPTIMIZERS + WRAPPERS + GENERIC + PRIMITIVES))


def _arguments(obj) -> list[str]:
    """The constructor's (or function's) arguments, ``*args`` and ``**kwargs`` starred."""
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    params = inspect.signature(obj).parameters.values()
    return [stars.get(p.kind, "") + p.name for p in params]


def _args_entries(doc: str) -> list[str]:
    """The names documented in the ``Args:`` section, in order."""
    lines = doc.splitlines()
    names = []
    for line in lines[lines.index("Args:") + 1 :]:
        entry = re.match(r"  (\*{0,2}\w+): ", line)
        if entry:
            names.append(entry.group(1))
        elif not line.startswith("    "):  # a blank line or the next section
            break
    return names


def test_lists_are_exported():
    missing = [n for n in DOCUMENTED if not callable(getattr(gx, n, None))]
    assert not missing
    assert "scale_by_adam" in PRIMITIVES and "scale_by_lbfgs" in PRIMITIVES


@pytest.mark.parametrize("name", DOCUMENTED)
def test_documented(name):
    obj = getattr(gx, name)
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"gx.{name} has no example"
    arguments = _arguments(obj)
    if arguments:
        assert "\nArgs:\n" in doc, f"gx.{name} takes arguments but has no 'Args:' section"
        # One entry per argument, in the signature's order.
        assert _args_entries(doc) == arguments
