"""DP-SGD: per-example clipping (bound, sensitivity, NumPy reference), the noise (statistics,
fresh per step, Optax's draws for the same seed), gx.dpsgd against Optax's, None leaves,
errors, and training a model on per-example gradients from vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

RNG = np.random.default_rng(11)
SHAPES = {"w": (3, 2), "b": (4,)}


def per_example(batch, scale=1.0, dtype=np.float32):
    # Norms spread over ~0.1 to ~10 so that some examples are clipped and some are not.
    out = {k: RNG.normal(size=(batch, *s)) for k, s in SHAPES.items()}
    mult = scale * np.geomspace(0.03, 3.0, batch)
    return {
        k: jnp.asarray(v * mult.reshape((-1,) + (1,) * len(SHAPES[k])), dtype)
        for k, v in out.items()
    }


def like_params(dtype=jnp.float32):
    return {k: jnp.zeros(s, dtype) for k, s in SHAPES.items()}


def numpy_clipped_mean(pe, c):
    """(1/B) sum_i g_i min(1, C / ||g_i||), float64 (Abadi et al., 2016, Algorithm 1)."""
    g = {k: np.asarray(v, np.float64) for k, v in pe.items()}
    b = next(iter(g.values())).shape[0]
    norms = np.sqrt(sum(np.sum(v.reshape(b, -1) ** 2, axis=1) for v in g.values()))
    m = np.minimum(1.0, c / norms)
    return {k: np.tensordot(m, v, axes=1) / b for k, v in g.items()}, norms


def test_clipped_mean_against_numpy_float64():
    with jax.enable_x64(True):
        pe = per_example(16, dtype=np.float64)
        tx = gx.clip_per_example(1.5)
        p = like_params(jnp.float64)
        u, _ = jax.jit(lambda p, pe: tx.update(p, tx.init(p), p, per_example_grads=pe))(p, pe)
    expected, norms = numpy_clipped_mean(pe, 1.5)
    assert (norms > 1.5).sum() >= 4 and (norms < 1.5).sum() >= 4  # both branches
    for k in SHAPES:
        assert u[k].dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(u[k]), expected[k], rtol=1e-13, atol=1e-15)


def test_every_example_is_bounded_and_the_sum_has_sensitivity_c():
    c = 0.7
    pe = per_example(12)
    tx = gx.clip_per_example(c)
    p = like_params()
    for i in range(12):  # one example at a time: its clipped gradient has norm <= C
        one = {k: v[i : i + 1] for k, v in pe.items()}
        u, _ = tx.update(p, tx.init(p), p, per_example_grads=one)
        assert float(gx.global_norm(u)) <= c * (1 + 1e-6)
    # Removing any one example moves the clipped SUM by at most C.
    full, _ = tx.update(p, tx.init(p), p, per_example_grads=pe)
    for i in range(12):
        rest = {k: jnp.concatenate([v[:i], v[i + 1 :]]) for k, v in pe.items()}
        part, _ = tx.update(p, tx.init(p), p, per_example_grads=rest)
        diff = jax.tree.map(lambda a, b: 12 * a - 11 * b, full, part)
        assert float(gx.global_norm(diff)) <= c * (1 + 1e-5)


def test_noise_statistics():
    # C sigma / B = 1.5 * 2 / 4 = 0.75. Over n = 2 * 60,000 draws, the sample std has a
    # relative standard error 1/sqrt(2n) ~ 0.002 and the mean a standard error 0.75 /
    # sqrt(n) ~ 0.0022: bounds of 5 standard errors (a false failure ~1e-6).
    c, sigma, b = 1.5, 2.0, 4
    p = {"a": jnp.zeros(60_000), "b": jnp.zeros((300, 200))}
    pe = {k: jnp.zeros((b, *v.shape)) for k, v in p.items()}
    tx = gx.add_dp_noise(c, sigma, seed=5)
    s = tx.init(p)
    step = jax.jit(lambda s: tx.update(p, s, p, per_example_grads=pe))
    u1, s = step(s)
    u2, s = step(s)
    z = np.concatenate([np.ravel(u1["a"]), np.ravel(u1["b"])])
    n = z.size
    assert abs(z.std() / 0.75 - 1) < 5 / np.sqrt(2 * n)
    assert abs(z.mean()) < 5 * 0.75 / np.sqrt(n)
    # Fresh noise at every step, independent across leaves.
    z2 = np.concatenate([np.ravel(u2["a"]), np.ravel(u2["b"])])
    assert abs(np.corrcoef(z, z2)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(np.ravel(u1["a"])[:60_000], np.ravel(u1["b"]))[0, 1]) < 5 / np.sqrt(
        60_000
    )
    # The same seed gives the same noise; without per_example_grads B = 1.
    again, _ = step(gx.add_dp_noise(c, sigma, seed=5).init(p))
    np.testing.assert_array_equal(np.asarray(again["a"]), np.asarray(u1["a"]))
    single, _ = tx.update(p, tx.init(p), p)
    np.testing.assert_allclose(np.asarray(single["a"]), 4 * np.asarray(u1["a"]), rtol=1e-6)


def _optax_dpsgd(lr, c, sigma, seed, momentum=None, nesterov=False):
    # optax.contrib.dpsgd(lr, c, sigma, seed, momentum, nesterov) builds exactly this
    # chain, but passes its seed through a deprecated argument (a warning, an error here).
    return optax.chain(
        optax.contrib.differentially_private_aggregate(c, sigma, key=jax.random.key(seed)),
        optax.trace(decay=momentum, nesterov=nesterov)
        if momentum is not None
        else optax.identity(),
        optax.scale_by_learning_rate(lr),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(l2_norm_clip=1.0, noise_multiplier=1.1, seed=0),
        dict(l2_norm_clip=0.5, noise_multiplier=0.3, seed=42, momentum=0.9),
        dict(l2_norm_clip=2.0, noise_multiplier=0.0, seed=3, momentum=0.5, nesterov=True),
    ],
    ids=["plain", "momentum", "nesterov-no-noise"],
)
def test_same_numbers_as_optax_dpsgd(kwargs):
    # The same key splits and normal draws as Optax: the trajectories agree up to rounding
    # (Optax adds the noise to the clipped sum and divides by B; we divide first).
    kw = dict(kwargs)
    ours = gx.dpsgd(0.1, **kw)
    theirs = _optax_dpsgd(
        0.1, kw.pop("l2_norm_clip"), kw.pop("noise_multiplier"), kw.pop("seed"), **kw
    )
    p = {k: jnp.asarray(RNG.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    q = p
    s, t = ours.init(p), theirs.init(q)
    step_ours = jax.jit(lambda pe, s, p: ours.update(p, s, p, per_example_grads=pe))
    step_theirs = jax.jit(theirs.update)
    for _ in range(5):
        pe = per_example(8)
        u, s = step_ours(pe, s, p)
        v, t = step_theirs(pe, t, q)
        p, q = gx.apply_updates(p, u), optax.apply_updates(q, v)
        for k in SHAPES:
            np.testing.assert_allclose(np.asarray(p[k]), np.asarray(q[k]), rtol=2e-6, atol=2e-7)
    # The PRNG states are the same key bits (Optax keeps a typed key, we the raw uint32[2]).
    np.testing.assert_array_equal(
        np.asarray(s.add_dp_noise.key), np.asarray(jax.random.key_data(t[0].rng_key))
    )


def test_none_and_non_array_leaves_and_complex():
    p = {"w": jnp.zeros(3), "frozen": None, "name": "enc", "z": jnp.zeros(2, jnp.complex64)}
    tx = gx.dpsgd(1.0, l2_norm_clip=1.0, noise_multiplier=0.5, seed=1)
    s = tx.init(p)
    pe = {
        "w": jnp.ones((2, 3)),
        "frozen": None,
        "name": "enc",
        "z": jnp.full((2, 2), 1 + 1j, jnp.complex64),
    }
    u, s = tx.update({**p}, s, p, per_example_grads=pe)
    assert u["frozen"] is None and u["name"] == "enc"
    assert u["z"].dtype == jnp.complex64 and np.all(np.imag(np.asarray(u["z"])) != 0)
    # Two keys split off: one per array leaf (the noise of "w" is Optax's first).
    clipped = 1 / np.sqrt(3 + 4)  # each example: ||(1,1,1, 1+i, 1+i)|| = sqrt(7)
    first_key = jax.random.split(jax.random.PRNGKey(1), 3)[1]
    z = jax.random.normal(first_key, (3,))
    np.testing.assert_allclose(np.asarray(u["w"]), -(clipped + 0.5 * np.asarray(z) / 2), rtol=1e-5)


def test_trains_a_logistic_model_on_vmapped_per_example_gradients():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 5)), jnp.float32)
    y = (x @ jnp.asarray([1.0, -2.0, 0.5, 0.0, 1.5]) > 0).astype(jnp.float32)
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}

    def example_loss(p, xi, yi):
        return gx.sigmoid_binary_cross_entropy(xi @ p["w"] + p["b"], yi)

    def loss(p):
        return jnp.mean(jax.vmap(example_loss, (None, 0, 0))(p, x, y))

    tx = gx.dpsgd(0.5, l2_norm_clip=1.0, noise_multiplier=1.0, seed=7, momentum=0.5)

    @jax.jit
    def step(p, s, idx):
        pe = jax.vmap(jax.grad(example_loss), (None, 0, 0))(p, x[idx], y[idx])
        u, s = tx.update(p, s, p, per_example_grads=pe)
        return gx.apply_updates(p, u), s

    s = tx.init(params)
    before = float(loss(params))
    for t in range(60):
        params, s = step(params, s, jnp.arange(64) + 64 * (t % 4))
    assert float(loss(params)) < 0.6 * before


def test_errors():
    p = like_params()
    tx = gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.0, seed=0)
    s = tx.init(p)
    with pytest.raises(
        ValueError,
        match=r"per_example_grads at \['b'\] has shape \(4,\); expected \(batch, \*\(4,\)\)",
    ):
        tx.update(p, s, p, per_example_grads={"w": jnp.ones((2, 3, 2)), "b": jnp.ones(4)})
    with pytest.raises(ValueError, match=r"at \['w'\] has shape \(2, 3, 2\).*every leaf \(3\)"):
        tx.update(p, s, p, per_example_grads={"w": jnp.ones((2, 3, 2)), "b": jnp.ones((3, 4))})
    with pytest.raises(ValueError, match=r"per_example_grads has no array at \['b'\]"):
        tx.update(p, s, p, per_example_grads={"w": jnp.ones((2, 3, 2)), "b": None})
    with pytest.raises(ValueError, match="per_example_grads must have the tree structure"):
        tx.update(p, s, p, per_example_grads={"w": jnp.ones((2, 3, 2))})
    with pytest.raises(
        ValueError, match=r"clip_per_example: l2_norm_clip must be a finite number in \(0"
    ):
        gx.dpsgd(0.1, l2_norm_clip=0.0, noise_multiplier=1.0, seed=0)
    with pytest.raises(
        ValueError, match=r"add_dp_noise: noise_multiplier must be a finite number in \[0"
    ):
        gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=-1.0, seed=0)
    with pytest.raises(ValueError, match="add_dp_noise: seed must be an integer"):
        gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.0, seed=0.5)
    with pytest.raises(ValueError, match="dpsgd: nesterov=True requires momentum"):
        gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.0, seed=0, nesterov=True)
    with pytest.raises(TypeError, match="positional"):
        gx.dpsgd(0.1, 1.0, 1.1, 0)  # optax.contrib.dpsgd's positional order: keyword-only here


def test_seed_is_a_leaf_no_recompile():
    traces = []
    p = like_params()

    @jax.jit
    def init(tx):
        traces.append(None)
        return tx.init(p)

    a = init(gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.0, seed=1))
    b = init(gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.0, seed=2))
    assert len(traces) == 1
    assert not np.array_equal(np.asarray(a.add_dp_noise.key), np.asarray(b.add_dp_noise.key))
    np.testing.assert_array_equal(np.asarray(a.add_dp_noise.key), np.asarray(jax.random.PRNGKey(1)))
