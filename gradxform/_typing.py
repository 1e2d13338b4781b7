"""Type aliases used in public signatures (re-exported by ``gradxform``).

They document intent; JAX pytrees cannot be typed more precisely than ``Any``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeAlias

import jax
import numpy as np

PyTree: TypeAlias = Any
"""Any JAX pytree: nested dicts, lists, tuples, NamedTuples, registered classes."""

Params: TypeAlias = PyTree
"""A tree of parameters: floating or complex arrays (optimized), ``None`` or other leaves
(not optimized)."""

Updates: TypeAlias = PyTree
"""A tree shaped like ``Params``: gradients going in, updates coming out."""

OptState: TypeAlias = Any
"""A transform's state: a NamedTuple of named fields, or a ``ChainState``."""

Scalar: TypeAlias = float | int | jax.Array | np.ndarray | np.number
"""A number: Python, NumPy or a 0-d JAX array (possibly traced)."""

ScalarOrSchedule: TypeAlias = Scalar | Callable[[jax.Array], Any]
"""A hyperparameter given as a number or as a schedule: a callable step count -> value
(``gradxform.schedules`` builds them as values)."""


class TreeDef(Protocol):
    """The members of JAX's ``PyTreeDef`` that gradxform uses (private, not re-exported).

    jaxlib ships no stub for its compiled pytree module, so JAX's own annotations of a
    treedef do not resolve for a type checker (mypy reads ``PyTreeDef?`` and refuses every
    attribute). Variables holding a treedef are annotated with this protocol instead.
    """

    @property
    def num_leaves(self) -> int: ...

    @property
    def num_nodes(self) -> int: ...

    def unflatten(self, leaves: Iterable[Any], /) -> Any: ...

    def flatten_up_to(self, tree: Any, /) -> list[Any]: ...
