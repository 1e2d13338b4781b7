"""Opt-in flat parameter layout: one buffer per dtype group instead of one per leaf.

With many small leaves, an optimizer step costs per buffer passed in and out, and its
compile time grows with the number of leaves. ``ParamLayout`` packs a parameter tree into
one 1-D array per dtype (like FSDP's flat parameter); the model unpacks views inside its
loss, so ``jax.grad`` returns gradients already flat, and every transform of the library
then runs on a handful of leaves::

    layout = gx.ParamLayout.of(params)
    flat = layout.flatten(params)           # {"float32": f32[n], "bfloat16": bf16[m]}
    state = tx.init(flat)

    def loss_fn(flat, batch):
        return model_loss(layout.unflatten(flat), batch)

    grads = jax.grad(loss_fn)(flat, batch)  # flat too: no per-step concatenation
    updates, state = tx.update(grads, state, flat)
    flat = gx.apply_updates(flat, updates)

Elementwise transforms give bitwise the same numbers as on the tree; tree reductions
(``clip_by_global_norm``) sum in another order (last-ulp differences). Per-leaf options
(weight-decay masks, partitions) need a per-leaf tree and do not apply to flat groups.
``pad_to`` pads each group to a multiple (e.g. the device count) so a flat group can be
sharded along its one axis with ``NamedSharding(mesh, PartitionSpec("x"))``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_tree_structure, is_none, is_param
from ._module import value_or_id
from ._typing import Params, TreeDef

__all__ = ["ParamLayout"]


@dataclasses.dataclass(frozen=True)
class _Slot:
    group: str  # dtype name
    offset: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Where each parameter leaf lives in its dtype group's flat buffer (static, hashable).

    Build it with the classmethod ``ParamLayout.of(params, pad_to=1)`` (the dataclass
    fields are internal); ``flatten`` packs a tree, ``unflatten`` views it back, and
    ``num_params`` counts the optimized elements (padding excluded).

    Example:
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2), "step": 3}
      >>> layout = gx.ParamLayout.of(params)
      >>> flat = layout.flatten(params)
      >>> flat
      {'float32': Array([0., 0., 1., 1., 1., 1.], dtype=float32)}
      >>> layout.num_params
      6
      >>> layout.unflatten(flat)["step"], layout.unflatten(flat)["w"].shape
      (3, (2, 2))
      >>> padded = gx.ParamLayout.of(params, pad_to=4)
      >>> padded
      ParamLayout(2 leaves -> float32[8])
      >>> padded.flatten(params)["float32"].shape, padded.num_params
      ((8,), 6)
    """

    treedef: TreeDef
    slots: tuple[_Slot | None, ...]  # one _Slot per leaf, None where not optimized
    others: tuple[Any, ...]  # the non-optimized leaves, kept as they are
    sizes: tuple[tuple[str, int], ...]  # (group, padded size) pairs

    @classmethod
    def of(cls, params: Params, pad_to: int = 1) -> ParamLayout:
        """The layout of ``params`` (arrays or ShapeDtypeStructs); groups by dtype.

        Args:
          params: the parameter tree, of arrays or ``jax.ShapeDtypeStruct``; float and complex
            leaves are grouped by dtype, other leaves (``None``, ints, strings) are kept as
            they are. No default.
          pad_to: pad each group's buffer with zeros to a multiple of this, an integer >= 1
            (e.g. the device count, to shard it). Default 1.

        Example:
          >>> gx.ParamLayout.of({"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}, pad_to=4)
          ParamLayout(2 leaves -> float32[8])
        """
        if not (isinstance(pad_to, (int, np.integer)) and not isinstance(pad_to, bool)) or (
            pad_to < 1
        ):
            raise ValueError(f"ParamLayout.of: pad_to must be an integer >= 1, got {pad_to!r}")
        leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
        offsets: dict[str, int] = {}
        slots: list[_Slot | None] = []
        others: list[Any] = []
        for leaf in leaves:
            if not is_param(leaf):
                slots.append(None)
                others.append(leaf)
                continue
            dt = jnp.dtype(jnp.result_type(leaf)).name
            shape = tuple(getattr(leaf, "shape", ()))
            off = offsets.get(dt, 0)
            slots.append(_Slot(dt, off, shape))
            offsets[dt] = off + math.prod(shape)
        sizes = tuple((g, -(-n // pad_to) * pad_to) for g, n in offsets.items())
        return cls(treedef, tuple(slots), tuple(others), sizes)

    def flatten(self, params: Params) -> dict[str, jax.Array]:
        """Pack ``params`` (laid out as this layout) into ``{dtype name: 1-D array}``.

        Args:
          params: a tree with the structure, shapes and dtypes the layout was built
            from. No default.
        """
        leaves = self.treedef.flatten_up_to(params)
        parts: dict[str, list] = {g: [] for g, _ in self.sizes}
        for j, (leaf, slot) in enumerate(zip(leaves, self.slots)):
            if slot is None and is_param(leaf):
                # It would be dropped: not in any buffer, unflatten gives the stored leaf.
                pairs = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_none)[0]
                raise ValueError(
                    f"ParamLayout.flatten: the leaf at {jax.tree_util.keystr(pairs[j][0])} is "
                    "a float array, but the layout was built with a leaf that is not "
                    "optimized there; build a new layout"
                )
            if slot is not None:
                arr = jnp.asarray(leaf)
                if arr.shape != slot.shape or arr.dtype.name != slot.group:
                    raise ValueError(
                        f"ParamLayout.flatten: leaf has {arr.dtype.name}{list(arr.shape)}, "
                        f"layout expects {slot.group}{list(slot.shape)}"
                    )
                parts[slot.group].append(arr.reshape(-1))
        out = {}
        for group, size in self.sizes:
            flat = jnp.concatenate(parts[group]) if parts[group] else jnp.zeros(0, group)
            out[group] = jnp.pad(flat, (0, size - flat.shape[0]))
        return out

    def unflatten(self, flat: dict[str, jax.Array]) -> Params:
        """The parameter tree viewed from flat buffers (slices: differentiable, cheap).

        Args:
          flat: ``{dtype name: 1-D array}`` as ``flatten`` returns it (or gradients with
            respect to it), with this layout's groups and padded sizes. No default.
        """
        check_tree_structure(dict(self.sizes), flat, names=("layout groups", "flat"))
        for group, size in self.sizes:
            buf = flat[group]
            dt, shape = jnp.dtype(jnp.result_type(buf)).name, tuple(jnp.shape(buf))
            if (dt, shape) != (group, (size,)):
                raise ValueError(
                    f"ParamLayout.unflatten: flat[{group!r}] is {dt}{list(shape)}, the layout "
                    f"expects {group}[{size}] (a buffer from another layout or pad_to?)"
                )
        others = iter(self.others)
        leaves = []
        for slot in self.slots:
            if slot is None:
                leaves.append(next(others))
            else:
                n = math.prod(slot.shape)
                buf = flat[slot.group]
                leaves.append(
                    jax.lax.slice_in_dim(buf, slot.offset, slot.offset + n).reshape(slot.shape)
                )
        return self.treedef.unflatten(leaves)

    # Value equality and hashing (a layout is a static argument of jit). A non-optimized
    # leaf that is not hashable (an int array, say) is compared by identity.
    def _key(self) -> tuple:
        return (self.treedef, self.slots, self.sizes, tuple(map(value_or_id, self.others)))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ParamLayout) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def num_params(self) -> int:
        return int(sum(math.prod(s.shape) for s in self.slots if s is not None))

    def __repr__(self) -> str:
        groups = ", ".join(f"{g}[{n}]" for g, n in self.sizes)
        leaves = sum(s is not None for s in self.slots)
        return f"ParamLayout({leaves} leaves -> {groups})"
