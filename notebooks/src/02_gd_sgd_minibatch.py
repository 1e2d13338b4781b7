# %% [markdown]
# # 02 · Gradient descent, SGD and mini-batches on Iris
#
# The Universidad de Sevilla slides (seed 003, Tema 2.2) introduce the cost function with
# the Iris data set (sepal and petal lengths and widths, three species) and then compare
# three ways of descending it:
#
# - **batch gradient descent**: "use all the examples of the training set D" at every step,
#   θ_j ← θ_j - α ∂J(θ)/∂θ_j. One gradient per epoch; guaranteed convergence on a convex
#   cost;
# - **stochastic gradient descent (SGD)**: "at each iteration one example is chosen at
#   random (with or without replacement)". Seed 001 (NYU notes) writes it
#   w_{k+1} = w_k - γ_k ∇f_i(w_k), f_i the cost of one example, and says "on average, SGD
#   approximates the solution of GD". Inconvenient (seed 003): "it may never reach a
#   minimum: vary the learning rate, decreasing it at each iteration";
# - **mini-batch SGD**: "takes B random examples of the training set ... reduces the
#   variance and gives a more stable convergence"; "common sizes: 32, 50, 64, 128, 256".
#
# Seed 000 (Portuguese notes on maximum likelihood) adds why this works: the mini-batch
# gradient is an *unbiased* estimate of the full gradient, "but with a larger variance". We
# check all of this on a softmax (multinomial logistic) regression of Iris.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris

jax.config.update("jax_enable_x64", True)

import gradxform as gx  # noqa: E402

data = load_iris()
order = np.random.default_rng(0).permutation(len(data.target))
x_all, y_all = data.data[order], data.target[order]
x_train, y_train, x_test, y_test = x_all[:120], y_all[:120], x_all[120:], y_all[120:]
mean, std = x_train.mean(axis=0), x_train.std(axis=0)  # standardize with training statistics
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
x_train, x_test = jnp.asarray(x_train), jnp.asarray(x_test)
y_train, y_test = jnp.asarray(y_train, jnp.int32), jnp.asarray(y_test, jnp.int32)
N = x_train.shape[0]
print(f"train {x_train.shape}, test {x_test.shape}, classes {np.bincount(np.asarray(y_train))}")

# %% [markdown]
# ## The model and the cost
#
# Logits z = x W + b (W is 4 × 3, b has 3 entries), and the cost is the mean softmax cross
# entropy, i.e. the negative log-likelihood of the labels (`gx.softmax_cross_entropy`),
# plus a small L2 penalty λ/2 ‖W‖² with λ = 0.01. Seed 003 writes the multi-class cost as a
# sum of per-class logistic losses; softmax is the usual multi-class choice, and both are
# convex. The penalty matters here: setosa is linearly separable from the other species, so
# without it the cost keeps decreasing as the weights grow and there is no minimum to
# converge to. With it the minimum is unique, and we compute it once with L-BFGS to measure
# every run by its gap J - J*.
#
# Everything is in float64 (`jax_enable_x64`) so that gaps down to 10⁻¹² are meaningful.

# %%
LAMBDA = 0.01


def cost(params, x, y):
    """Mean cross entropy on (x, y) plus the L2 penalty: J on a batch."""
    logits = x @ params["w"] + params["b"]
    return gx.softmax_cross_entropy(logits, y) + 0.5 * LAMBDA * jnp.sum(params["w"] ** 2)


def full_cost(params):
    return cost(params, x_train, y_train)


def accuracy(params, x, y):
    return float(jnp.mean(jnp.argmax(x @ params["w"] + params["b"], axis=-1) == y))


params0 = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
best = gx.minimize(full_cost, params0, gx.lbfgs(), max_steps=1000, tol=1e-10, ftol=0.0)
J_STAR = float(best.value)
print(f"J at the start (log 3): {float(full_cost(params0)):.6f}")
status = gx.MinimizeStatus(int(best.status)).name
print(f"J* = {J_STAR:.10f} ({status}, {int(best.num_steps)} L-BFGS steps)")
train_acc, test_acc = accuracy(best.params, x_train, y_train), accuracy(best.params, x_test, y_test)
print(f"accuracy at the minimum: train {train_acc:.3f}, test {test_acc:.3f}")

# %% [markdown]
# ## One training loop for every batch size
#
# Each epoch shuffles the training set (sampling *without* replacement, so that every
# example is used once per epoch) and cuts it into batches of B examples; each batch gives
# one gradient and one update. B = 120 is batch gradient descent, B = 1 is SGD. The batch
# sizes used below divide 120, so no example is dropped. After every update we also record
# the full training cost J, to see what each update does to the quantity we care about.


# %%
def train(tx, batch, epochs, start, seed=0):
    """From params start: J after every update, and the parameters after each epoch."""
    steps = N // batch

    def epoch(carry, key):
        perm = jax.random.permutation(key, N).reshape(steps, batch)

        def step(carry, idx):
            params, state = carry
            grads = jax.grad(cost)(params, x_train[idx], y_train[idx])
            updates, state = tx.update(grads, state, params)
            params = gx.apply_updates(params, updates)
            return (params, state), full_cost(params)

        carry, costs = jax.lax.scan(step, carry, perm)
        return carry, (costs, carry[0])

    keys = jax.random.split(jax.random.key(seed), epochs)
    _, (costs, params) = jax.lax.scan(epoch, (start, tx.init(start)), keys)
    return costs.reshape(-1), params


train = jax.jit(train, static_argnums=(1, 2))

# %% [markdown]
# ## Same learning rate, different batch sizes
#
# All runs use plain `gx.sgd(0.1)` for 100 epochs; only the batch size changes. Left: the gap
# J - J* against the number of **updates** (gradient steps). Right: against the number of
# **examples processed**, i.e. per-example gradient evaluations (120 per epoch for every
# batch size): the cost of the computation on one processor.

# %%
EPOCHS, LR = 100, 0.1
BATCHES = {"GD (B = 120)": 120, "mini-batch B = 24": 24, "mini-batch B = 8": 8, "SGD (B = 1)": 1}
COLORS = dict(zip(BATCHES, ["black", "tab:blue", "tab:green", "tab:orange"]))
runs = {name: train(gx.sgd(LR), b, EPOCHS, params0) for name, b in BATCHES.items()}

# %%
# figure: 02_gd_sgd_minibatch
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for z, (name, (costs, _)) in enumerate(runs.items()):
    gap = np.asarray(costs) - J_STAR
    updates = np.arange(1, len(gap) + 1)
    style = dict(lw=0.8, color=COLORS[name], label=name, zorder=10 - z)  # SGD at the back
    left.loglog(updates, gap, **style)
    right.semilogy(updates * BATCHES[name] / N, gap, **style)
left.set_xlabel("updates (gradient steps)")
right.set_xlabel("epochs (examples processed / 120)")
for ax in (left, right):
    ax.set_ylabel("J - J*")
    ax.legend(fontsize=8)
left.set_title("per update: the same progress, until the noise floor", fontsize=10)
right.set_title("per example processed: small batches win, then stall", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Per update, all batch sizes make the *same* progress at first (the curves on the left lie on
# top of each other; GD's stops after its 100 updates): with the same learning rate, a
# mini-batch step moves on average like a full-batch step, since its gradient is an
# unbiased estimate. What the batch size changes is the noise, and the cost of a step. Per
# example processed (right), SGD and small mini-batches therefore descend much faster: they
# take 120 or 15 steps per epoch where GD takes one. But they **stall at a noise floor**:
# with a constant learning rate the noisy gradient keeps kicking the parameters around the
# minimum, and the smaller the batch the higher the floor (B = 1 reaches it within 10 epochs,
# B = 8 is about to). Gradient descent has no floor: it converges, slowly, to J* itself.
#
# ## The mini-batch gradient: unbiased, with variance ~ 1/B
#
# At the minimum the full gradient is 0, so whatever a mini-batch gradient shows there is
# pure noise. Below, its mean squared size E‖g_B - g‖² over 2000 random batches for every B,
# against the formula for sampling without replacement from n examples,
# (σ² / B) · (n - B) / (n - 1), with σ² the mean squared per-example gradient: the variance
# falls like 1/B and vanishes at B = n (the full batch). The last two columns check that the
# estimate is unbiased: the average of the 2000 mini-batch gradients differs from the full
# gradient only by the Monte Carlo error expected from 2000 draws, √(E‖g_B - g‖² / 2000).

# %%
w_star = best.params
per_example = jax.vmap(lambda x, y: jax.grad(cost)(w_star, x[None], y[None]))(x_train, y_train)
flat = jnp.concatenate([per_example["w"].reshape(N, -1), per_example["b"]], axis=1)  # (N, 15)
full = flat.mean(axis=0)
sigma2 = float(jnp.mean(jnp.sum((flat - full) ** 2, axis=1)))
print(f"full gradient at the minimum: max |g| = {float(jnp.abs(full).max()):.2e}")


# 2000 random orderings of the training set; a batch of size B is the first B of each.
perms = np.asarray(
    jax.vmap(lambda k: jax.random.permutation(k, N))(jax.random.split(jax.random.key(1), 2000))
)
flat_np, full_np = np.asarray(flat), np.asarray(full)
sizes = [1, 2, 4, 8, 15, 24, 40, 60, 120]
measured, mean_error = [], []
for b in sizes:
    g_b = flat_np[perms[:, :b]].mean(axis=1)  # (2000, 15): the mini-batch gradients
    measured.append(np.mean(np.sum((g_b - full_np) ** 2, axis=1)))
    mean_error.append(np.linalg.norm(g_b.mean(axis=0) - full_np))
theory = [sigma2 / b * (N - b) / (N - 1) for b in sizes]
print(f"{'B':>4}{'E|g_B - g|^2':>15}{'formula':>12}", end="")
print(f"{'|mean of g_B - g|':>20}{'sqrt(E|g_B - g|^2 / 2000)':>28}")
for b, m, t, e in zip(sizes, measured, theory, mean_error):
    print(f"{b:>4}{m:>15.4g}{t:>12.4g}{e:>20.2e}{np.sqrt(m / 2000):>28.2e}")

# %%
# figure: minibatch_gradient_noise
fig, ax = plt.subplots(figsize=(7, 4))
ax.loglog(sizes[:-1], measured[:-1], "o", label="measured (2000 batches)")
ax.loglog(sizes[:-1], theory[:-1], "-", color="0.4", label="(σ²/B)(n - B)/(n - 1)")
ax.set_xlabel("batch size B")
ax.set_ylabel("E‖g_B - g‖² at the minimum")
ax.set_title("mini-batch gradient noise (B = 120 gives exactly 0)")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The noise of one update is what sets the floor of the previous figure. Two ways to lower
# it: a larger batch (each update costs more) or a smaller learning rate (each update moves
# less). The notes recommend the second, over time.
#
# ## Final results
#
# The noise floor of each batch size is measured directly: start *at the minimum* and run
# 100 epochs with the same learning rate; the mean of J - J* over all those updates is how far
# the noise alone keeps the parameters from the minimum.

# %%
print(f"{'method':<19}{'updates':>8}{'J - J*':>11}{'noise floor':>13}", end="")
print(f"{'train acc':>11}{'test acc':>10}")
for name, (costs, params) in runs.items():
    final = jax.tree.map(lambda p: p[-1], params)
    floor = np.mean(np.asarray(train(gx.sgd(LR), BATCHES[name], EPOCHS, w_star)[0])) - J_STAR
    floor = max(floor, 0.0)  # GD: 0 up to rounding (J* itself is known to ~1e-16)
    print(f"{name:<19}{len(costs):>8}{float(costs[-1]) - J_STAR:>11.2e}{floor:>13.2e}", end="")
    print(f"{accuracy(final, x_train, y_train):>11.3f}{accuracy(final, x_test, y_test):>10.3f}")

# %% [markdown]
# After 100 epochs GD, with its 100 updates, is still far from the minimum, and it shows in
# the accuracy. The other runs classify exactly like the minimum itself (0.967 on both
# sets): the differences in J between them are far below what changes a prediction. The
# noise floor grows quickly as the batch shrinks (about 10⁻⁵, 10⁻⁴ and 3·10⁻³ for B = 24, 8,
# 1), which is the price of SGD's cheap steps.
#
# ## Decaying the learning rate
#
# Seed 003: SGD "may never reach a minimum: vary the learning rate, decreasing its value at
# each iteration"; seed 001 writes the rate as γ_k, a function of the step. Two common
# decays, as gradxform schedules (t counts updates; 120 updates per epoch for SGD):
#
# - inverse time decay, `gx.inverse_time_decay(0.1, 0.1, transition_steps=120)`:
#   lr(t) = 0.1 / (1 + 0.1 t / 120), i.e. divided by 1 + epoch / 10;
# - step decay, `gx.piecewise_constant_schedule(boundaries=(3600, 7200), values=(0.1, 0.01,
#   0.001))`: divided by 10 after epochs 30 and 60 (PyTorch's `MultiStepLR`).
#
# Both are passed as the learning rate of `gx.sgd`: `gx.sgd(schedule)`.

# %%
SCHEDULES = {
    "constant 0.1": 0.1,
    "constant 0.01": 0.01,
    "inverse time decay": gx.inverse_time_decay(0.1, 0.1, transition_steps=N),
    "step decay (÷10 at epochs 30, 60)": gx.piecewise_constant_schedule(
        boundaries=(30 * N, 60 * N), values=(0.1, 0.01, 0.001)
    ),
}
decay_runs = {name: train(gx.sgd(lr), 1, EPOCHS, params0)[0] for name, lr in SCHEDULES.items()}
assert np.array_equal(decay_runs["constant 0.1"], runs["SGD (B = 1)"][0])  # same run as above
print(f"{'SGD (B = 1), learning rate':<36}{'J - J* (mean of last epoch)':>28}")
for name, costs in decay_runs.items():
    print(f"{name:<36}{float(np.mean(np.asarray(costs[-N:]))) - J_STAR:>28.3e}")

# %%
# figure: sgd_lr_decay
fig, ax = plt.subplots(figsize=(8, 4))
epochs_axis = np.arange(1, EPOCHS * N + 1) / N
for (name, costs), color in zip(
    decay_runs.items(), ["tab:orange", "tab:brown", "tab:blue", "tab:purple"]
):
    ax.semilogy(epochs_axis, np.asarray(costs) - J_STAR, lw=0.7, color=color, label=name)
gd = np.asarray(runs["GD (B = 120)"][0]) - J_STAR
ax.semilogy(np.arange(1, EPOCHS + 1), gd, color="black", lw=1.2, label="GD, constant 0.1")
ax.set_xlabel("epoch")
ax.set_ylabel("J - J*")
ax.set_title("SGD (B = 1): a decaying learning rate goes below the noise floor", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# With a constant rate of 0.1, SGD's gap stops at a floor around 10⁻³. The smaller
# constant rate, 0.01, is much less noisy but ten times slower: after 100 epochs it has not
# yet come down to that floor. A decaying rate gets both, large steps early and small steps
# late. The step decay shows how the floor depends on the rate: each division of the rate by
# 10 lowers the floor by about as much. The inverse time decay lowers it gradually.
#
# ## What to try next
#
# - Sample *with* replacement (`jax.random.randint` instead of `permutation`): the seed 003
#   slide allows both. Does anything change?
# - Scale the learning rate with the batch size (lr ∝ B is a common rule) and redo the
#   first figure.
# - Replace `gx.sgd` by `gx.momentum` or `gx.adam` (notebooks 01 and 07), or add
#   `gx.clip_by_global_norm` in a `gx.chain`.
# - Set `LAMBDA = 0` and watch the weights of the setosa class grow for ever.
