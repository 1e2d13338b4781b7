"""8-bit block-wise storage of optimizer moments: ``Int8Blocks`` and ``QuantizedArray``.

A moment slot becomes a ``QuantizedArray``: int8 codes of shape (num_blocks, block) and
one float32 scale (the block's max |x|) per block, shapes fixed at ``init``. The slot is
a pytree node whose leaves are those two arrays, so the state stays a pytree of arrays
(jit, scan carries, checkpoints). Moments are decoded to the compute dtype, updated there
exactly as with float storage, and encoded back once per step.

Two codes:

- ``"dynamic"`` (default): x / scale * 448 rounded to float8 e4m3 (3 mantissa bits, a
  4-bit exponent), its bit pattern kept as int8. Relative error <= 2^-4 for
  |x| >= 2^-6/448 scale, and values down to 2^-9/448 scale are kept: 5 decades per block,
  the point of a dynamic map (Dettmers et al., 2022) over a linear one.
- ``"linear"``: round(127 x / scale): absolute error <= scale / 254, entries below that
  are 0.

The second moment is stored as sqrt(v) (a non-negative array whose decades are half v's,
so a block covers twice v's dynamic range: a small v next to a large one in the same
block would otherwise round to 0 and blow up m / sqrt(v)). Its square is the decoded v.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_int
from .._leafwise import EncodedSlot, compute_dtype
from .._module import Module, static_field

__all__ = ["Int8Blocks", "QuantizedArray", "check_storage", "encode", "load_slot", "store_slot"]

_F8 = jnp.float8_e4m3fn
_F8_MAX = 448.0  # the largest finite float8_e4m3fn
_LINEAR_MAX = 127.0


@dataclasses.dataclass(frozen=True)
class QuantizedArray(EncodedSlot):
    """One moment slot stored in 8 bits per entry: see the module docstring.

    ``codes``: int8 (num_blocks, block); ``scale``: float32 (num_blocks,), each block's
    max |x|. Static: ``shape`` and ``dtype`` of the decoded array (a complex array is
    stored as its real parts, then its imaginary parts), ``code`` ("dynamic" or
    "linear"), ``sqrt`` (the codes hold sqrt(x) of a non-negative x).
    """

    codes: jax.Array
    scale: jax.Array
    shape: tuple[int, ...]
    dtype: Any
    code: str
    sqrt: bool

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale.nbytes)

    def decode(self) -> jax.Array:
        """The stored array, in ``dtype``."""
        real = jnp.finfo(self.dtype).dtype
        if self.code == "dynamic":
            y = jax.lax.bitcast_convert_type(self.codes, _F8).astype(jnp.float32)
            x = y * (self.scale / _F8_MAX)[:, None]
        else:
            x = self.codes.astype(jnp.float32) * (self.scale / _LINEAR_MAX)[:, None]
        size = math.prod(self.shape)
        flat = x.reshape(-1).astype(real)
        if self.sqrt:
            flat = flat * flat
        if jnp.issubdtype(self.dtype, jnp.complexfloating):
            flat = jax.lax.complex(flat[:size], flat[size : 2 * size])
        return flat[:size].reshape(self.shape).astype(self.dtype)


jax.tree_util.register_dataclass(
    QuantizedArray, data_fields=["codes", "scale"], meta_fields=["shape", "dtype", "code", "sqrt"]
)


class Int8Blocks(Module):
    """8-bit block-wise storage for optimizer moments (``moment_storage=`` option).

    Each leaf's moment is cut into blocks of ``block_size`` entries, each stored as int8
    codes and one float32 scale: 1 + 4 / block_size bytes per entry instead of 4. The
    second moment is stored as sqrt(v). See ``gradxform.optimizers._quantize``.

    Args:
      block_size: entries per block, >= 1 (a leaf smaller than a block is one block of
        its size). Default 256.
      code: "dynamic" (float8 e4m3 codes: relative error <= 6.25% over 5 decades per
        block) or "linear" (absolute error <= max|x| / 254). Default "dynamic".

    Example:
      >>> tx = gx.adam(1e-3, moment_storage=gx.Int8Blocks(block_size=4))
      >>> state = tx.init(jnp.zeros(10))
      >>> mu = state.scale_by_adam.mu
      >>> mu.codes.shape, mu.codes.dtype, mu.scale.shape
      ((3, 4), dtype('int8'), (3,))
    """

    block_size: int = static_field(default=256)
    code: str = static_field(default="dynamic")

    def __post_init__(self):
        check_int("Int8Blocks", "block_size", self.block_size, low=1)
        if self.code not in ("dynamic", "linear"):
            raise ValueError(f"Int8Blocks: code must be 'dynamic' or 'linear', got {self.code!r}")

    def _layout(self, shape: tuple[int, ...], dtype: Any) -> tuple[int, int]:
        n = math.prod(shape) * (2 if jnp.issubdtype(dtype, jnp.complexfloating) else 1)
        block = max(1, min(self.block_size, n))
        return -(-n // block), block

    def zeros(self, p: Any, *, sqrt: bool = False) -> QuantizedArray:
        """A zero slot for parameter ``p`` (array or ShapeDtypeStruct); ``sqrt=True``
        for a second moment (real, stored as its square root)."""
        dtype = compute_dtype(p)
        if sqrt:
            dtype = jnp.finfo(dtype).dtype
        shape = tuple(p.shape)
        nb, block = self._layout(shape, dtype)
        return QuantizedArray(
            codes=jnp.zeros((nb, block), jnp.int8),
            scale=jnp.zeros((nb,), jnp.float32),
            shape=shape,
            dtype=jnp.dtype(dtype),
            code=self.code,
            sqrt=sqrt,
        )


def encode(x: jax.Array, like: QuantizedArray) -> QuantizedArray:
    """``x`` (shaped like ``like``'s decoded array) stored with ``like``'s layout."""
    nb, block = like.codes.shape
    if jnp.iscomplexobj(x):
        flat = jnp.concatenate([jnp.real(x).reshape(-1), jnp.imag(x).reshape(-1)])
    else:
        flat = x.reshape(-1)
    flat = flat.astype(jnp.float32)
    if like.sqrt:
        flat = jnp.sqrt(jnp.maximum(flat, 0))
    flat = jnp.pad(flat, (0, nb * block - flat.shape[0]))
    blocks = flat.reshape(nb, block)
    scale = jnp.max(jnp.abs(blocks), axis=1, initial=0.0)
    inv = jnp.where(scale > 0, 1 / jnp.where(scale > 0, scale, 1), 0)[:, None]
    if like.code == "dynamic":
        y = jnp.clip(blocks * inv * _F8_MAX, -_F8_MAX, _F8_MAX).astype(_F8)
        codes = jax.lax.bitcast_convert_type(y, jnp.int8)
    else:
        codes = jnp.round(blocks * inv * _LINEAR_MAX).astype(jnp.int8)
    return dataclasses.replace(like, codes=codes, scale=scale)


def load_slot(slot: Any) -> Any:
    """A slot's value as an array: decoded if it is a ``QuantizedArray``."""
    return slot.decode() if isinstance(slot, QuantizedArray) else slot


def store_slot(x: jax.Array, slot: Any) -> Any:
    """``x`` stored like ``slot``: encoded for a ``QuantizedArray``, else cast to the
    slot's dtype (fixed at ``init``)."""
    if isinstance(slot, QuantizedArray):
        return encode(x, slot)
    return x.astype(slot.dtype)


def check_storage(owner: str, storage: Any, mu_dtype: Any, nu_dtype: Any) -> None:
    """``moment_storage`` is None or an ``Int8Blocks``, and then no dtype option."""
    if storage is None:
        return
    if not isinstance(storage, Int8Blocks):
        raise TypeError(
            f"{owner}: moment_storage must be None or gx.Int8Blocks(...), got {storage!r}"
        )
    if mu_dtype is not None or nu_dtype is not None:
        raise ValueError(
            f"{owner}: give moment_storage or mu_dtype / nu_dtype, not both (got "
            f"moment_storage={storage!r}, mu_dtype={mu_dtype!r}, nu_dtype={nu_dtype!r})"
        )
