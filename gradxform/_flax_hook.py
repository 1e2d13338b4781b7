"""``ChainState`` in ``flax.serialization`` (msgpack checkpoints), without importing Flax.

``flax.serialization`` handles dicts, lists, tuples and NamedTuples itself; ``ChainState``
is registered as ``{member name: state}``. Importing ``flax.serialization`` costs about as
much as importing gradxform, so it is never imported here: if it already is, the
registration happens at once; otherwise a ``sys.meta_path`` finder answering for that one
module registers it right after Flax imports it, then removes itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

from .base import ChainState


def _register_with_flax(serialization: Any) -> None:
    def to_state_dict(s: ChainState) -> dict[str, Any]:
        return {n: serialization.to_state_dict(x) for n, x in zip(s.names, s.states)}

    def from_state_dict(target: ChainState, sd: dict[str, Any]) -> ChainState:
        if set(sd) != set(target.names):
            raise ValueError(
                f"ChainState: the state dict has members {sorted(sd)}, the target chain "
                f"{list(target.names)}, at path {serialization.current_path()}"
            )
        states = [
            serialization.from_state_dict(x, sd[n], name=n)
            for n, x in zip(target.names, target.states)
        ]
        return ChainState(target.names, states)

    try:
        serialization.register_serialization_state(ChainState, to_state_dict, from_state_dict)
    except ValueError:  # already registered (this module reloaded): keep the first
        pass


class _LoaderThenRegister(importlib.abc.Loader):
    """Runs the real loader of ``flax.serialization``, then registers ``ChainState``."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _FlaxHook.remove()
        _register_with_flax(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, ... for tracebacks
        return getattr(self._loader, name)


class _FlaxHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` entry that only answers for ``flax.serialization``: it finds
    the module with the other finders and wraps its loader."""

    NAME = "flax.serialization"

    def find_spec(self, fullname, path, target=None):
        if fullname != self.NAME:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None:
            return spec
        spec.loader = _LoaderThenRegister(spec.loader)
        return spec

    @classmethod
    def remove(cls) -> None:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, cls)]


def install_flax_hook() -> None:
    module = sys.modules.get(_FlaxHook.NAME)
    if module is not None:
        _register_with_flax(module)
    elif not any(isinstance(f, _FlaxHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _FlaxHook())
