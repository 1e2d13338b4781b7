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
(``clip_by_global_norm``) sum in another order (last-ulp differences).

Per-leaf choices still work on the flat form:

- masks, partitions, freezing: ``labels=`` (any labels selector ``gx.partition`` takes)
  puts each label's leaves in buffers of their own, ``{label: {dtype: buffer}}``, so a
  mask or a partition over labels is an ordinary selector on the flat tree
  (``weight_decay_mask={"decay": True, "no_decay": False}``, ``gx.partition(txs,
  layout.labels())``);
- per-leaf reductions (norms for trust ratios, clipping by block): ``leaf_sums`` reduces
  each buffer per original leaf through static segment ids, ``per_element`` broadcasts
  per-leaf values back; a transform given ``layout=`` uses them.

``pad_to`` pads each buffer to a multiple (e.g. the device count) so it can be sharded
along its one axis with ``NamedSharding(mesh, PartitionSpec("x"))``; padding is its own
segment, never mixed into a leaf's reduction. ``flat_params`` is the one-call form.
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
from ._typing import Params, PyTree, TreeDef

__all__ = ["ParamLayout", "flat_params"]


@dataclasses.dataclass(frozen=True)
class _Slot:
    group: str  # "dtype", or "label/dtype" with labels
    offset: int
    shape: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.group.rsplit("/", 1)[-1]


def _group(label: str | None, dtype: str) -> str:
    return dtype if label is None else f"{label}/{dtype}"


def _nest(groups: dict[str, Any]) -> dict[str, Any]:
    """{"label/dtype": x} -> {label: {dtype: x}}; plain {"dtype": x} stays as it is."""
    out: dict[str, Any] = {}
    for key, value in groups.items():
        if "/" in key:
            label, dtype = key.rsplit("/", 1)
            out.setdefault(label, {})[dtype] = value
        else:
            out[key] = value
    return out


def _unnest(flat: Any) -> dict[str, Any]:
    out = {}
    for key, value in flat.items():
        if isinstance(value, dict):
            out.update({f"{key}/{dt}": v for dt, v in value.items()})
        else:
            out[key] = value
    return out


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Where each parameter leaf lives in its dtype group's flat buffer (static, hashable).

    Build it with the classmethod ``ParamLayout.of(params, pad_to=1, labels=None)`` (the
    dataclass fields are internal); ``flatten`` packs a tree, ``unflatten`` views it back,
    ``num_params`` counts the optimized elements (padding excluded), ``labels`` gives the
    flat tree's labels, ``leaf_sums`` / ``per_element`` reduce and broadcast per leaf.

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
    def of(cls, params: Params, pad_to: int = 1, *, labels: Any = None) -> ParamLayout:
        """The layout of ``params`` (arrays or ShapeDtypeStructs); groups by dtype.

        Args:
          params: the parameter tree, of arrays or ``jax.ShapeDtypeStruct``; float and complex
            leaves are grouped by dtype, other leaves (``None``, ints, strings) are kept as
            they are. No default.
          pad_to: pad each group's buffer with zeros to a multiple of this, an integer >= 1
            (e.g. the device count, to shard it). Default 1.
          labels: a label per parameter, as ``gx.partition`` takes them (a tree of label
            strings, ``gx.where``, ``gx.match({pattern: label})``): each label gets buffers
            of its own and the flat tree becomes ``{label: {dtype: buffer}}``. Labels may
            not contain "/". Default None: one buffer per dtype.

        Example:
          >>> gx.ParamLayout.of({"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}, pad_to=4)
          ParamLayout(2 leaves -> float32[8])
          >>> gx.ParamLayout.of({"w": jnp.ones((2, 2)), "b": jnp.zeros(3)},
          ...                   labels=gx.match({"w": "decay", "b": "no_decay"}))
          ParamLayout(2 leaves -> no_decay/float32[3], decay/float32[4])
        """
        if not (isinstance(pad_to, (int, np.integer)) and not isinstance(pad_to, bool)) or (
            pad_to < 1
        ):
            raise ValueError(f"ParamLayout.of: pad_to must be an integer >= 1, got {pad_to!r}")
        leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
        names: list[Any] = [None] * len(leaves)
        if labels is not None:
            # Imported here: selectors import the transforms' base, which this module
            # (a generic piece under them) must not import at load time.
            from .wrappers.selectors import as_selector, resolve_selector

            owner = "ParamLayout.of"
            names = resolve_selector(owner, as_selector(owner, labels, "labels"), params, "labels")
            bad = sorted({n for n in names if n is not None and ("/" in n or not n)})
            if bad:
                raise ValueError(f"{owner}: labels must be non-empty and contain no '/', got {bad}")
        offsets: dict[str, int] = {}
        slots: list[_Slot | None] = []
        others: list[Any] = []
        for leaf, label in zip(leaves, names):
            if not is_param(leaf):
                slots.append(None)
                others.append(leaf)
                continue
            group = _group(label, jnp.dtype(jnp.result_type(leaf)).name)
            shape = tuple(getattr(leaf, "shape", ()))
            off = offsets.get(group, 0)
            slots.append(_Slot(group, off, shape))
            offsets[group] = off + math.prod(shape)
        sizes = tuple((g, -(-n // pad_to) * pad_to) for g, n in offsets.items())
        return cls(treedef, tuple(slots), tuple(others), sizes)

    def flatten(self, params: Params) -> dict[str, Any]:
        """Pack ``params`` (laid out as this layout) into ``{dtype name: 1-D array}``
        (``{label: {dtype name: 1-D array}}`` for a layout built with labels).

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
                if arr.shape != slot.shape or arr.dtype.name != slot.dtype:
                    raise ValueError(
                        f"ParamLayout.flatten: leaf has {arr.dtype.name}{list(arr.shape)}, "
                        f"layout expects {slot.dtype}{list(slot.shape)}"
                    )
                parts[slot.group].append(arr.reshape(-1))
        out = {}
        for group, size in self.sizes:
            dtype = group.rsplit("/", 1)[-1]
            flat = jnp.concatenate(parts[group]) if parts[group] else jnp.zeros(0, dtype)
            out[group] = jnp.pad(flat, (0, size - flat.shape[0]))
        return _nest(out)

    def unflatten(self, flat: dict[str, Any]) -> Params:
        """The parameter tree viewed from flat buffers (slices: differentiable, cheap).

        Args:
          flat: ``{dtype name: 1-D array}`` as ``flatten`` returns it (or gradients with
            respect to it), with this layout's groups and padded sizes. No default.
        """
        check_tree_structure(_nest(dict(self.sizes)), flat, names=("layout groups", "flat"))
        flat = _unnest(flat)
        for group, size in self.sizes:
            buf = flat[group]
            dt, shape = jnp.dtype(jnp.result_type(buf)).name, tuple(jnp.shape(buf))
            if (dt, shape) != (group.rsplit("/", 1)[-1], (size,)):
                raise ValueError(
                    f"ParamLayout.unflatten: flat[{group!r}] is {dt}{list(shape)}, the layout "
                    f"expects {group.rsplit('/', 1)[-1]}[{size}] (a buffer from another "
                    "layout or pad_to?)"
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

    def labels(self) -> dict[str, Any]:
        """The flat tree's labels (``{label: {dtype: label}}``), for ``gx.partition``.

        Example:
          >>> layout = gx.ParamLayout.of({"w": jnp.ones(2), "b": jnp.ones(1)},
          ...                            labels={"w": "adam", "b": "sgd"})
          >>> layout.labels()
          {'sgd': {'float32': 'sgd'}, 'adam': {'float32': 'adam'}}
        """
        if not any("/" in g for g, _ in self.sizes):
            raise ValueError("ParamLayout.labels: this layout was built without labels=")
        return _nest({g: g.rsplit("/", 1)[0] for g, _ in self.sizes})

    def _segments(self) -> dict[str, tuple[np.ndarray, int]]:
        """Per group: the leaf index of each element (padding: its own last index)."""
        out = {}
        for group, size in self.sizes:
            lengths = [math.prod(s.shape) for s in self.slots if s is not None and s.group == group]
            ids = np.repeat(np.arange(len(lengths) + 1, dtype=np.int32), [*lengths, 0])
            ids = np.concatenate([ids, np.full(size - ids.size, len(lengths), np.int32)])
            out[group] = (ids, len(lengths) + 1)
        return out

    def leaf_sums(self, flat: PyTree) -> dict[str, Any]:
        """Sum of each original leaf's elements, per buffer of a flat tree.

        Returns a tree like ``flat`` whose buffers hold one value per original leaf (in
        the layout's order) plus one last value for the padding. Per-leaf norms are
        ``jnp.sqrt(layout.leaf_sums(jax.tree.map(jnp.square, flat)))``.

        Args:
          flat: a tree shaped like ``flatten``'s result (values, squares, gradients).
            No default.

        Example:
          >>> layout = gx.ParamLayout.of({"a": jnp.ones(2), "b": jnp.ones(3)}, pad_to=8)
          >>> layout.leaf_sums(layout.flatten({"a": jnp.ones(2), "b": jnp.full(3, 2.0)}))
          {'float32': Array([2., 6., 0.], dtype=float32)}
        """
        segments = self._segments()
        flat = _unnest(flat)
        check_tree_structure(dict(self.sizes), flat, names=("layout groups", "flat"))
        return _nest(
            {
                g: jax.ops.segment_sum(
                    flat[g], segments[g][0], segments[g][1], indices_are_sorted=True
                )
                for g, _ in self.sizes
            }
        )

    def leaf_norms(self, flat: PyTree) -> dict[str, Any]:
        """Euclidean norm of each original leaf, per buffer, in at least float32.

        Like ``leaf_sums`` of the squares, but without overflow or underflow: each leaf
        is divided by its largest magnitude before squaring (the per-leaf rule of
        ``scale_by_trust_ratio``). The last value of each buffer is the padding's norm.

        Args:
          flat: a tree shaped like ``flatten``'s result. No default.

        Example:
          >>> layout = gx.ParamLayout.of({"a": jnp.ones(2), "b": jnp.ones(3)})
          >>> layout.leaf_norms({"float32": jnp.array([3.0, 4.0, 1e30, 0.0, 0.0])})
          {'float32': Array([5.e+00, 1.e+30, 0.e+00], dtype=float32)}
        """
        segments = self._segments()
        flat = _unnest(flat)
        check_tree_structure(dict(self.sizes), flat, names=("layout groups", "flat"))
        out = {}
        for g, _ in self.sizes:
            ids, n = segments[g]
            a = jnp.abs(flat[g])
            a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
            top = jax.ops.segment_max(a, ids, n, indices_are_sorted=True)
            top = jnp.maximum(top, jnp.zeros([], a.dtype))  # an empty segment gives -inf
            safe = jnp.where(top > 0, top, jnp.ones([], a.dtype))
            sq = jax.ops.segment_sum(jnp.square(a / safe[ids]), ids, n, indices_are_sorted=True)
            out[g] = top * jnp.sqrt(sq)
        return _nest(out)

    def per_element(self, per_leaf: PyTree) -> dict[str, Any]:
        """Broadcast per-leaf values (as ``leaf_sums`` returns them) back to elements.

        Args:
          per_leaf: a tree like ``leaf_sums``' result: one value per leaf and one for the
            padding, per buffer. No default.

        Example:
          >>> layout = gx.ParamLayout.of({"a": jnp.ones(2), "b": jnp.ones(1)})
          >>> layout.per_element({"float32": jnp.array([10.0, 20.0, 0.0])})
          {'float32': Array([10., 10., 20.], dtype=float32)}
        """
        segments = self._segments()
        per_leaf = _unnest(per_leaf)
        check_tree_structure(dict(self.sizes), per_leaf, names=("layout groups", "per_leaf"))
        return _nest({g: jnp.take(per_leaf[g], segments[g][0]) for g, _ in self.sizes})

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


def flat_params(params: Params, *, pad_to: int = 1, labels: Any = None):
    """One call from a model's parameter tree to ``(flat, unflatten)``.

    ``flat`` is what the optimizer sees (a few 1-D buffers); ``unflatten(flat)`` gives the
    tree back (views, differentiable), so the loss stays written for the tree:
    ``loss = lambda flat, batch: model_loss(unflatten(flat), batch)``. Works on Flax
    parameter dicts and on Equinox modules (their non-array leaves, e.g. activation
    functions, are kept in the layout as they are). ``unflatten.layout`` is the
    ``ParamLayout`` (for ``labels()``, ``leaf_sums``, or a transform's ``layout=``).

    Args:
      params: the parameter tree (Flax ``params`` dict, Equinox module, any pytree). No
        default.
      pad_to: pad each buffer to a multiple of this (e.g. the device count). Default 1.
      labels: per-parameter labels, as ``ParamLayout.of`` takes them. Default None.

    Example:
      >>> flat, unflatten = gx.flat_params({"w": jnp.ones((2, 2)), "b": jnp.zeros(2)})
      >>> flat
      {'float32': Array([0., 0., 1., 1., 1., 1.], dtype=float32)}
      >>> unflatten(flat)["w"].shape
      (2, 2)
    """
    layout = ParamLayout.of(params, pad_to, labels=labels)

    def unflatten(flat: dict[str, Any]) -> Params:
        return layout.unflatten(flat)

    unflatten.layout = layout  # type: ignore[attr-defined]
    return layout.flatten(params), unflatten
