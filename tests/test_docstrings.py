"""Docstrings: every ``>>>`` example in the package runs, every public callable has one.

(a) Each module under ``gradxform/`` is doctested (one case per module), with the names
``gx``, ``jax``, ``jnp`` and ``np`` available, under the strict environment of conftest.
(b) Every public callable exported by ``gradxform`` and ``gradxform.logging`` (but type
aliases, base classes, state and result classes, enums and modules) shows an example and
documents its arguments in an ``Args:`` section, one entry per argument in the
signature's order (for a class, its constructor's, or that of the classmethod in
``CONSTRUCTORS``).
"""

from __future__ import annotations

import doctest
import enum
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


# MLflowLogger's example opens a SQLite store: SQLAlchemy 2.1 warns about a loader
# strategy MLflow's store uses (as in test_mlflow.py); only there, only that warning.
_MLFLOW_WARNING = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.mark.parametrize(
    "module_name",
    [pytest.param(m, marks=_MLFLOW_WARNING) if m == "gradxform.logging" else m for m in MODULES],
)
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


# (b) covers every public callable of ``gradxform`` and ``gradxform.logging`` but these:
# type aliases, the base classes (documented as protocols, not called), state and result
# classes (built by the library, not by users), enums and modules.
ALIASES = {"PyTree", "Params", "Updates", "OptState", "Scalar", "ScalarOrSchedule"}
BASES = {"Module", "GradientTransformation", "Schedule", "LineSearch", "Logger"}
# Classes users build through a classmethod, not their (internal) constructor: that
# classmethod's docstring documents its arguments (the class docstring has the example).
CONSTRUCTORS = {"ParamLayout": "of"}


def _excluded(name: str, obj) -> bool:
    if name.startswith("_") or name in ALIASES | BASES or inspect.ismodule(obj):
        return True
    if not callable(obj):
        return True
    if inspect.isclass(obj):
        # NamedTuple states and results (and ChainState, a state that is not a tuple).
        state = issubclass(obj, tuple) or name.endswith(("State", "Result"))
        return state or issubclass(obj, enum.Enum)
    return False


def _public() -> dict[str, object]:
    """``{"gx.name": obj}`` for every public callable the check (b) covers."""
    out = {f"gx.{n}": getattr(gx, n) for n in dir(gx)}
    out |= {f"gx.logging.{n}": getattr(gx.logging, n) for n in gx.logging.__all__}
    return {k: v for k, v in out.items() if not _excluded(k.rsplit(".", 1)[1], v)}


DOCUMENTED = sorted(_public())


def _arguments(obj) -> list[str]:
    """The constructor's (or function's) arguments, ``*args`` and ``**kwargs`` starred.

    For a class in ``CONSTRUCTORS``, the arguments of the classmethod users call.
    """
    if inspect.isclass(obj) and obj.__name__ in CONSTRUCTORS:
        obj = getattr(obj, CONSTRUCTORS[obj.__name__])
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


def test_public_api_is_covered():
    # A sample of each kind: optimizers, primitives, wrappers, full-batch solvers, tree
    # helpers, schedules, losses, checkpoints, classes and the loggers.
    expected = {
        "adam", "scale_by_adam", "scale_by_lbfgs", "masked", "minimize", "zoom_linesearch",
        "global_norm", "check_tree_structure", "cosine_decay_schedule", "l2_loss", "save",
        "ParamLayout", "logging.JsonlLogger", "logging.CsvLogger", "logging.MLflowLogger",
        "logging.config_dict",
    }  # fmt: skip
    assert {f"gx.{n}" for n in expected} <= set(DOCUMENTED)
    excluded = {"gx.GradientTransformation", "gx.AdamState", "gx.ChainState", "gx.PyTree"}
    excluded |= {"gx.MinimizeStatus", "gx.MinimizeResult", "gx.logging.Logger"}
    assert not excluded & set(DOCUMENTED)
    for name, attr in CONSTRUCTORS.items():
        assert inspect.ismethod(getattr(getattr(gx, name), attr))


@pytest.mark.parametrize("name", DOCUMENTED)
def test_documented(name):
    obj = _public()[name]
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"{name} has no example"
    arguments = _arguments(obj)
    if inspect.isclass(obj) and obj.__name__ in CONSTRUCTORS:
        doc = inspect.getdoc(getattr(obj, CONSTRUCTORS[obj.__name__])) or ""
    if arguments:
        assert "\nArgs:\n" in doc, f"{name} takes arguments but has no 'Args:' section"
        # One entry per argument, in the signature's order.
        assert _args_entries(doc) == arguments
