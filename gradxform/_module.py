"""The frozen-pytree-dataclass machinery: ``Module``, ``static_field``, ``StaticTree``.

Every transform and schedule subclasses ``Module``: a frozen dataclass registered as a
pytree whose numeric hyperparameters are leaves and whose structural options (flags,
dtypes, names, plain Python callables) are static, part of the treedef. Hence value
equality, hashing (for static metadata such as Flax ``TrainState.tx``), a readable
``repr``, and hyperparameters that can be traced and changed without a recompile.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, ClassVar, dataclass_transform

import jax
import numpy as np

from ._checks import check_dtype_option, is_none
from ._typing import PyTree, TreeDef


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the treedef (structure), not a leaf."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def _is_static_value(value: Any) -> bool:
    # A plain Python callable (a user's lambda schedule, a mask function) cannot be a jit
    # argument, so it is structure, not data. Modules are callable pytrees: never static.
    # A tuple holding one (join_schedules of a lambda and a schedule) is static whole.
    if isinstance(value, (tuple, list)):
        return any(map(_is_plain_callable, value))
    return _is_plain_callable(value)


def _is_plain_callable(value: Any) -> bool:
    return callable(value) and not isinstance(value, Module)


def value_or_id(x: Any) -> Any:
    """A cache-key part for ``x``: its value if hashable, else its identity (the caller
    keeps ``x`` alive while the key is in use, so the id stays ``x``'s)."""
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return ("value", x)


@functools.cache
def _field_kinds(cls: type) -> tuple[tuple[str, bool], ...]:
    # dataclasses.fields costs microseconds per call, and a transform passed to a jitted
    # step is flattened on every call: compute each class's field list once.
    return tuple((f.name, bool(f.metadata.get("static"))) for f in dataclasses.fields(cls))


# dataclass_transform tells type checkers what __init_subclass__ does at run time: every
# subclass is a frozen dataclass (with its own __init__ from its fields), no synthesized
# __eq__ (Module defines value equality itself), and static_field() declares a field.
@dataclass_transform(frozen_default=True, eq_default=False, field_specifiers=(static_field,))
class Module:
    """Base of transforms and schedules: a frozen dataclass that is also a pytree.

    Subclasses are turned into frozen dataclasses automatically. Fields declared with
    ``static_field()`` and fields holding plain callables go in the treedef; all other
    fields are children (leaves or sub-pytrees). ``__post_init__`` runs validation on
    construction only: unflattening (inside ``jit``) bypasses it, so tracers never meet
    Python-side range checks.
    """

    if TYPE_CHECKING:
        # Set on every subclass by dataclasses.dataclass (see __init_subclass__).
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        # Storage dtype options (mu_dtype, nu_dtype, ...) are checked at construction.
        dtype_fields = [f.name for f in dataclasses.fields(cls) if f.name.endswith("_dtype")]
        if dtype_fields:
            init = cls.__init__

            @functools.wraps(init)
            def checked_init(self, *args, **kw):
                init(self, *args, **kw)
                for name in dtype_fields:
                    check_dtype_option(type(self).__name__, name, getattr(self, name))

            # mypy refuses any assignment to a method; replacing the generated __init__
            # is the point here (setattr would do the same but trips ruff's B010).
            cls.__init__ = checked_init  # type: ignore[method-assign]
        jax.tree_util.register_pytree_with_keys(
            cls, cls._tree_flatten_with_keys, cls._tree_unflatten, cls._tree_flatten
        )

    # -- pytree protocol --
    def _split(self) -> tuple[list[tuple[str, Any]], tuple]:
        children, static = [], []
        # Typed as plain `type`: mypy checks type[Module] for hashability against
        # Module's instance __hash__ and refuses it as a functools.cache key.
        cls: type = type(self)
        for name, is_static in _field_kinds(cls):
            value = getattr(self, name)
            if is_static or _is_static_value(value):
                static.append((name, value))
            else:
                children.append((name, value))
        names = tuple(n for n, _ in children)
        return children, (type(self), names, tuple(static))

    def _tree_flatten_with_keys(self):
        children, aux = self._split()
        return [(jax.tree_util.GetAttrKey(n), v) for n, v in children], aux

    def _tree_flatten(self):
        children, aux = self._split()
        return [v for _, v in children], aux

    @classmethod
    def _tree_unflatten(cls, aux, children):
        _, names, static = aux
        obj = object.__new__(cls)
        for name, value in (*zip(names, children), *static):
            object.__setattr__(obj, name, value)
        return obj

    # -- value semantics --
    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        ta: TreeDef
        tb: TreeDef
        a, ta = jax.tree_util.tree_flatten(self)
        b, tb = jax.tree_util.tree_flatten(other)
        return ta == tb and all(_leaf_equal(x, y) for x, y in zip(a, b))

    def __hash__(self) -> int:
        leaves, treedef = jax.tree_util.tree_flatten(self)
        try:
            return hash((treedef, tuple(leaves)))
        except TypeError as e:
            raise TypeError(
                f"{type(self).__name__} is not hashable because a hyperparameter is an "
                "array; build it from Python numbers to use it as static metadata "
                "(e.g. in flax TrainState), or pass it to jit as an argument instead."
            ) from e

    def __repr__(self) -> str:
        args = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"{type(self).__name__}({args})"


def _leaf_equal(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return False
    if isinstance(x, (jax.Array, np.ndarray)) or isinstance(y, (jax.Array, np.ndarray)):
        x, y = np.asarray(x), np.asarray(y)
        return x.dtype == y.dtype and x.shape == y.shape and bool(np.all(x == y))
    return type(x) is type(y) and x == y


# --------------------------------------------------------------------------------------
# Hyperparameter validation (construction time only)


class StaticTree:
    """A pytree of Python values (bools, strings) held as static structure.

    Hashable and compared by value (``True`` and ``1`` differ), so a transform holding a
    mask or a label tree can be a jit argument or Flax ``TrainState`` metadata.
    """

    __slots__ = ("tree", "_key")
    tree: PyTree
    _key: tuple[TreeDef, tuple[tuple[type, Any], ...]]

    def __init__(self, tree: PyTree):
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_none)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "_key", (treedef, tuple((type(x), x) for x in leaves)))

    def __setattr__(self, name, value):
        raise AttributeError("StaticTree is immutable")

    def __reduce__(self):  # pickle and copy rebuild through __init__, not setattr
        return StaticTree, (self.tree,)

    def __eq__(self, other):
        return isinstance(other, StaticTree) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return repr(self.tree)
