"""Checkpoints: states as flat dicts of named arrays, ``.npz`` files, Flax msgpack.

``state_dict(state)`` names every array of a state (or of any pytree) by its key path;
``load_state_dict(template, d)`` puts such a dict back into a state shaped like
``template`` and says by name what did not fit; ``save`` / ``load`` write and read that
dict as an ``.npz`` file (NumPy only, no pickle) in which every dtype round-trips bit
for bit, bfloat16 and the float8 / int4 families included.

Key format
----------
A key is the leaf's key path with its components joined by ``"/"``:

- a chain member by its name (``scale_by_adam``; repeats ``_0``, ``_1``, or the keyword
  given to ``chain``), a NamedTuple field or an attribute by its name (``mu``,
  ``inner_state``), a dict entry by ``str(key)``, a list or tuple element by its index;
- a named optimizer is a chain, and its label (``"adam"``) is not a path component: the
  members are, so ``gx.adam(1e-3)`` on ``{"dense": {"kernel": w}}`` has
  ``"scale_by_adam/mu/dense/kernel"``, ``"scale_by_adam/count"``,
  ``"scale_by_learning_rate/learning_rate"``, ... (``gx.chain(opt=gx.adam(1e-3))``
  puts ``"opt/"`` in front);
- ``None`` leaves (no state slot: frozen, masked-out or non-array parameters) have no
  key; scalars (counts, the learning rate in effect) have one.

These are the same components Orbax uses as nested-dict keys when it restores without a
template, and the keys ``flax.serialization.to_state_dict`` gives (joined by ``"/"``).
A tree in which two different paths give the same key (a dict key containing ``"/"``,
dict keys ``1`` and ``"1"`` side by side) is refused with both paths.

Flax msgpack
------------
``flax.serialization`` handles dicts, lists, tuples and NamedTuples itself; the one
container of this package it does not know is ``ChainState``. It is registered with
``flax.serialization.register_serialization_state`` as ``{member name: state}``, when
``flax.serialization`` is imported: at once if it already is when ``gradxform`` is
imported, otherwise by an import hook (a ``sys.meta_path`` finder that looks at that one
module name and removes itself once it has registered). ``import gradxform`` therefore
never imports Flax (``import flax.serialization`` costs about 0.35 s, as much as
``import gradxform`` itself), and Flax is not a dependency.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import is_none
from ._flax_hook import install_flax_hook
from ._typing import PyTree

__all__ = ["state_dict", "load_state_dict", "save", "load"]

# The .npz member holding the format description and the dtypes stored as bits.
_META = "__gradxform__"
_FORMAT = "gradxform.state_dict"
_VERSION = 1
_SHOWN = 20  # names listed per kind of mismatch in an error message


# --------------------------------------------------------------------------------------
# Keys


def _component(entry: Any) -> str:
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.DictKey):
        return str(entry.key)
    if isinstance(entry, jax.tree_util.SequenceKey):
        return str(entry.idx)
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return str(entry.key)
    return str(entry)


def _is_array(x: Any) -> bool:
    """An array leaf: jax.Array, NumPy array or scalar, ShapeDtypeStruct, tracer."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def _keyed_leaves(owner: str, tree: PyTree) -> tuple[list[tuple[str, Any]], Any]:
    """(key, leaf) of every leaf of ``tree`` (None leaves excluded) and the treedef."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out: list[tuple[str, Any]] = []
    seen: dict[str, Any] = {}
    for path, leaf in with_path:
        key = "/".join(_component(e) for e in path)
        if key in seen:
            raise ValueError(
                f"{owner}: two leaves have the key {key!r}: {jax.tree_util.keystr(seen[key])} "
                f"and {jax.tree_util.keystr(path)} (a dict key containing '/', or keys that "
                "print alike); rename one"
            )
        seen[key] = path
        out.append((key, leaf))
    return out, treedef


def _flat(owner: str, d: Mapping) -> dict[str, Any]:
    """``d`` with nested mappings and sequences flattened into "/"-joined keys (the
    nested dicts Orbax restores without a template); None entries dropped."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{owner}: expected a dict of arrays, got {type(d).__name__}")
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if is_none(node):
            return
        if isinstance(node, Mapping):
            items = [(str(k), v) for k, v in node.items()]
        elif isinstance(node, (list, tuple)) and not _is_array(node):
            items = [(str(i), v) for i, v in enumerate(node)]
        else:
            if prefix in out:
                raise ValueError(f"{owner}: the key {prefix!r} is given twice")
            out[prefix] = node
            return
        for k, v in items:
            walk(f"{prefix}/{k}" if prefix else k, v)

    for k, v in d.items():
        walk(str(k), v)
    return out


def _describe(x: Any) -> str:
    dtype = _dtype_name(x)
    return f"{dtype}{list(np.shape(x))}"


def _dtype_name(x: Any) -> str:
    try:
        return jnp.dtype(x.dtype).name
    except TypeError:  # extended dtypes (PRNG keys) are not NumPy dtypes
        return str(x.dtype)


def _listing(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = f", ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{kind} ({len(names)}): {shown}{more}"


# --------------------------------------------------------------------------------------
# state_dict / load_state_dict


def state_dict(state: PyTree) -> dict[str, jax.Array]:
    """The arrays of ``state`` in a flat dict, keyed by their "/"-joined key paths.

    Keys are built from chain member names, NamedTuple fields, dict keys and sequence
    indices (the module docstring gives the exact format); ``None`` leaves have no key,
    scalars (step counts) have one. The arrays are the state's own (no copy), in
    flattening order. Leaves that are not arrays (strings, Python numbers: not part of
    any state of this package) are left out.

    Args:
      state: an optimizer state (or any pytree: params, a whole train state); a state
        of ``jax.ShapeDtypeStruct`` gives the keys with their shapes and dtypes.

    Example:
      >>> params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
      >>> d = gx.state_dict(gx.adam(1e-3).init(params))
      >>> d["scale_by_adam/mu/dense/kernel"].shape, d["scale_by_adam/count"]
      ((2, 3), Array(0, dtype=int32))
      >>> [k for k in d if k.startswith("scale_by_learning_rate")]
      ['scale_by_learning_rate/count', 'scale_by_learning_rate/learning_rate']
      >>> for key in gx.state_dict(gx.masked(gx.sgd(0.1, momentum=0.9), "*/bias").init(params)):
      ...     print(key)  # no slot for the kernel
      inner_state/scale_by_momentum/count
      inner_state/scale_by_momentum/velocity/dense/bias
      inner_state/scale_by_learning_rate/count
      inner_state/scale_by_learning_rate/learning_rate
    """
    keyed, _ = _keyed_leaves("state_dict", state)
    return {k: x for k, x in keyed if _is_array(x)}


def load_state_dict(template: PyTree, d: Mapping, strict: bool = True) -> PyTree:
    """A state shaped like ``template`` holding the arrays of ``d`` (``state_dict``'s).

    Each array of ``template`` takes the entry of ``d`` with its key (``state_dict``'s
    format). The entry must have the template leaf's shape and dtype exactly (nothing is
    cast). It is placed like the template leaf: with that leaf's sharding when the leaf
    is a ``jax.Array`` or a ``jax.ShapeDtypeStruct`` that has one (the default device
    when it has none; uncommitted, as JAX says, when the template array is, so that a
    jitted step sees the same input placement as before); a NumPy leaf gets a NumPy
    array. Non-array template leaves (and
    ``None``) are kept as they are.

    Args:
      template: a state of the same transform: ``tx.init(params)``, or
        ``jax.eval_shape(tx.init, params)`` (abstract, nothing allocated).
      d: ``{key: array}`` as ``state_dict`` returns (arrays may be NumPy or JAX); nested
        dicts are accepted too and flattened the same way (``{"scale_by_adam": {"mu":
        ...}}``), which is what Orbax restores without a template.
      strict: with True (the default) every array of ``template`` must find an entry of
        the same shape and dtype and every entry an array: otherwise one ``ValueError``
        lists the missing, unexpected and mismatched keys by name. With False, what
        matches is loaded and every other array keeps the template's value (unexpected
        entries are ignored); the template must then be concrete where nothing matched
        (an abstract leaf left unfilled is an error naming it).

    Example:
      >>> params = {"w": jnp.ones(3)}
      >>> tx = gx.sgd(0.1, momentum=0.9)
      >>> state = tx.init(params)
      >>> _, state = tx.update(params, state, params)
      >>> template = jax.eval_shape(tx.init, params)
      >>> restored = gx.load_state_dict(template, gx.state_dict(state))
      >>> restored.scale_by_momentum.velocity["w"]
      Array([1., 1., 1.], dtype=float32)
      >>> gx.load_state_dict(template, {"scale_by_momentum/count": np.zeros([], np.int32)})
      Traceback (most recent call last):
      ...
      ValueError: load_state_dict: the dict does not fit the template: missing (3): ...
      >>> partial = {"scale_by_momentum/velocity/w": np.full(3, 2.0, np.float32)}
      >>> gx.load_state_dict(state, partial, strict=False).scale_by_momentum.velocity["w"]
      Array([2., 2., 2.], dtype=float32)
    """
    owner = "load_state_dict"
    flat = _flat(owner, d)
    keyed, treedef = _keyed_leaves(owner, template)
    known = {k for k, _ in keyed}
    missing: list[str] = []
    mismatched: list[str] = []
    leaves = []
    for key, leaf in keyed:
        if not _is_array(leaf):
            leaves.append(leaf)
            continue
        if key not in flat:
            missing.append(key)
            leaves.append(leaf)
            continue
        value = flat[key]
        if not _is_array(value):
            value = np.asarray(value)
        if tuple(np.shape(value)) != tuple(leaf.shape) or _dtype_name(value) != _dtype_name(leaf):
            mismatched.append(f"{key} (expected {_describe(leaf)}, got {_describe(value)})")
            leaves.append(leaf)
            continue
        leaves.append(_place(value, leaf))
    unexpected = [k for k in flat if k not in known]
    if strict and (missing or unexpected or mismatched):
        parts = [
            _listing(kind, names)
            for kind, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("mismatched", mismatched),
            )
            if names
        ]
        raise ValueError(f"{owner}: the dict does not fit the template: " + "; ".join(parts))
    if not strict:
        abstract = [
            k
            for (k, leaf), new in zip(keyed, leaves)
            if new is leaf and isinstance(leaf, jax.ShapeDtypeStruct)
        ]
        if abstract:
            raise ValueError(
                f"{owner}: with strict=False, template arrays that get no entry keep the "
                "template's value, but these are jax.ShapeDtypeStruct (no value): "
                + ", ".join(abstract[:_SHOWN])
                + ". Pass a concrete template (tx.init(params)) or supply them."
            )
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _place(value: Any, leaf: Any) -> Any:
    """``value`` as an array placed like the template ``leaf``."""
    if isinstance(leaf, np.ndarray | np.generic):
        return np.asarray(value)
    if isinstance(leaf, jax.core.Tracer) or isinstance(value, jax.core.Tracer):
        return jnp.asarray(value)
    if isinstance(leaf, jax.Array) and not leaf.committed:
        # Uncommitted like the template (the default device, free to move): a committed
        # array where the running state had none would compile the jitted step again.
        return jnp.asarray(value)
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return jnp.asarray(value)
    return jax.device_put(value, sharding)


# --------------------------------------------------------------------------------------
# .npz files


def _native(dtype: np.dtype) -> bool:
    """A dtype NumPy writes and reads back by itself (not bfloat16, float8, int4...)."""
    return dtype.kind in "biufc" and dtype.isbuiltin == 1


def save(path: str | os.PathLike, state: PyTree) -> None:
    """Writes ``state_dict(state)`` to the ``.npz`` file ``path`` (NumPy only, no pickle).

    Each key is a member of the archive; a dtype NumPy cannot store (bfloat16, the
    float8 and float4 families, int4, int2, ...) is stored as its bits, unsigned
    integers of the same width, and its name is recorded in a small JSON member
    ``"__gradxform__"``; typed PRNG keys are stored as their key data. So every array
    comes back bit for bit, NaN payloads and negative zeros included. The file is
    written next to ``path`` and moved over it when complete, so an interrupted save
    never leaves a truncated checkpoint. ``path`` is used as given (no suffix added).
    Arrays must be fully addressable by this process (one host); for multi-host
    checkpoints use Orbax.

    Args:
      path: the file to write (str or path-like).
      state: the state (or any pytree of arrays) to write.

    Example:
      >>> import os, tempfile
      >>> params = {"w": jnp.ones(3, jnp.bfloat16)}
      >>> tx = gx.adam(1e-3, mu_dtype=jnp.bfloat16)
      >>> state = tx.init(params)
      >>> _, state = tx.update(params, state, params)
      >>> path = os.path.join(tempfile.mkdtemp(), "opt_state.npz")
      >>> gx.save(path, state)
      >>> restored = gx.load(path, tx.init(params))
      >>> restored.scale_by_adam.mu["w"]
      Array([0.100098, 0.100098, 0.100098], dtype=bfloat16)
      >>> sorted(np.load(path))[:3]
      ['__gradxform__', 'scale_by_adam/count', 'scale_by_adam/mu/w']
    """
    entries = state_dict(state)
    if _META in entries:
        raise ValueError(f"save: the key {_META!r} is reserved for the file's metadata")
    dtypes: dict[str, str] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, x in entries.items():
        if isinstance(x, jax.ShapeDtypeStruct):
            raise TypeError(f"save: {key} is a jax.ShapeDtypeStruct (no value to save)")
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            dtypes[key] = "key:" + str(jax.random.key_impl(x))
            x = jax.random.key_data(x)
        a = np.asarray(jax.device_get(x))
        if not _native(a.dtype):
            dtypes.setdefault(key, a.dtype.name)
            a = a.view(np.dtype(f"u{a.dtype.itemsize}"))
        arrays[key] = a
    meta = {"format": _FORMAT, "version": _VERSION, "dtypes": dtypes}
    arrays[_META] = np.asarray(json.dumps(meta, sort_keys=True))
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        # What np.savez writes, with the names taken as given (np.savez's own keyword
        # arguments, "file" and "allow_pickle", would clash with keys of those names).
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, a in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, a, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path: str | os.PathLike, template: PyTree, *, strict: bool = True) -> PyTree:
    """Reads a file written by ``save`` into a state shaped like ``template``.

    The file is opened with ``np.load(path, allow_pickle=False)``; arrays stored as bits
    get their dtype back from the metadata; then ``load_state_dict(template, ...)``
    places them (with the template leaves' shardings) and reports mismatches by key. An
    ``.npz`` written by ``np.savez(path, **gx.state_dict(state))`` loads too when all its
    dtypes are NumPy's own.

    Args:
      path: the file ``save`` wrote.
      template: a state of the same transform (``tx.init(params)`` or
        ``jax.eval_shape(tx.init, params)``).
      strict: as in ``load_state_dict``. Default True.

    Example:
      >>> import os, tempfile
      >>> params = {"w": jnp.ones(2)}
      >>> path = os.path.join(tempfile.mkdtemp(), "s.npz")
      >>> gx.save(path, gx.sgd(0.1, momentum=0.9).init(params))
      >>> gx.load(path, gx.adam(1e-3).init(params))
      Traceback (most recent call last):
      ...
      ValueError: load_state_dict: the dict does not fit the template:
      missing (3): scale_by_adam/count, scale_by_adam/mu/w, scale_by_adam/nu/w;
      unexpected (2): scale_by_momentum/count, scale_by_momentum/velocity/w
    """
    dtypes: dict[str, str] = {}
    d: dict[str, Any] = {}
    with np.load(os.fspath(path), allow_pickle=False) as z:
        if _META in z.files:
            meta = json.loads(str(z[_META]))
            if meta.get("format") != _FORMAT or meta.get("version", 0) > _VERSION:
                raise ValueError(
                    f"load: {os.fspath(path)!r} holds format {meta.get('format')!r} version "
                    f"{meta.get('version')!r}; this gradxform reads {_FORMAT!r} up to "
                    f"version {_VERSION}"
                )
            dtypes = meta.get("dtypes", {})
        for name in z.files:
            if name != _META:
                d[name] = z[name]
    for key, dtype in dtypes.items():
        if key not in d:
            continue
        if dtype.startswith("key:"):
            d[key] = jax.random.wrap_key_data(d[key], impl=dtype[len("key:") :])
        else:
            d[key] = d[key].view(jnp.dtype(dtype))
    return load_state_dict(template, d, strict=strict)


# Register ChainState with flax.serialization now or when Flax is imported (_flax_hook).
install_flax_hook()
