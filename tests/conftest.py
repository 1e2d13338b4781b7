"""Strict test environment: every test runs under it.

- 4 host CPU devices, so sharding code paths are always exercised.
- Strict dtype promotion and rank promotion errors: an implicit float32 -> float64 or
  broadcasting bug in the library fails loudly instead of passing silently.
- Warnings are errors (pyproject's filterwarnings).
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
