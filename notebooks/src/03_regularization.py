# %% [markdown]
# # 03 · L1, L2 and decoupled weight decay
#
# A linear regression with 50 features of which only 5 matter. Without a penalty the
# model fits the noise with all 50 weights; a penalty on the weights pulls the 45
# irrelevant ones towards zero. This notebook compares the ways `gradxform` adds that
# penalty to the update:
#
# | penalty | added to the loss | `gradxform` |
# |---|---|---|
# | L2, coupled | lam sum w^2 | `gx.sgd(lr, weight_decay=2 * lam)`, `gx.adam(lr, weight_decay=wd)` |
# | L2, decoupled | (none: a shrink step) | `gx.adamw(lr, weight_decay=wd)` |
# | L1, subgradient | lam sum \|w\| | `gx.chain(gx.add_l1_subgradient(lam), gx.sgd(lr))` |
# | L1, proximal | lam sum \|w\| | `gx.chain(gx.sgd(lr), gx.proximal_l1(lam, lr))` |
#
# The course notes (seed 004, the video script's "L1 regularization" and "L2
# regularization" sections) define the penalties as `l1_regularization(weights, lambd) =
# lambd * sum(|weights|)` and `l2_regularization(weights, lambd) = lambd * sum(weights**2)`,
# added to the MSE loss `mean((y_true - y_pred)**2)`: L1 "encourages sparsity, that is,
# most weights become zero", L2 "prevents overfitting by keeping the weights from
# becoming too large".
#
# Notice one thing in the notes' code: the penalty is added to the *logged* loss, but the
# update `weights -= learning_rate * gradient` uses the gradient of the MSE alone, so those
# weights are never regularized. The penalty acts only if it enters the gradient (or the
# update): that is what the transforms below do.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Lasso

import gradxform as gx

# %% [markdown]
# ## The data
#
# 200 training and 1,000 validation examples of 50 standard-normal features; the target
# is `y = X w_true + noise` with 5 nonzero weights (the first five features) and noise of
# standard deviation 1, so the best possible validation MSE is about 1. With 200 examples
# for 50 weights least squares already works; a penalty has to beat it.

# %%
rng = np.random.default_rng(0)
n_train, n_val, n_features = 200, 1000, 50
w_true = np.zeros(n_features)
w_true[:5] = [2.0, -1.5, 1.0, -0.75, 0.5]
X_all = rng.normal(size=(n_train + n_val, n_features))
y_all = X_all @ w_true + rng.normal(size=n_train + n_val)
X, y = jnp.asarray(X_all[:n_train], jnp.float32), jnp.asarray(y_all[:n_train], jnp.float32)
X_val = jnp.asarray(X_all[n_train:], jnp.float32)
y_val = jnp.asarray(y_all[n_train:], jnp.float32)
relevant = w_true != 0


def mse(w, inputs, targets):
    """The notes' loss: mean squared error (no 1/2)."""
    return gx.mean_squared_error(inputs @ w, targets)


def train(tx, steps=2000):
    """Full-batch training from w = 0; returns the weights after every step, (steps, 50)."""
    w0 = jnp.zeros(n_features)

    def step(carry, _):
        w, state = carry
        g = jax.grad(mse)(w, X, y)
        updates, state = tx.update(g, state, w)
        w = gx.apply_updates(w, updates)
        return (w, state), w

    _, path = jax.lax.scan(step, (w0, tx.init(w0)), None, length=steps)
    return path


def report(name, w):
    w = np.asarray(w)
    val = float(mse(jnp.asarray(w), X_val, y_val))
    zeros = int(np.sum(w == 0.0))
    typical = float(np.median(np.abs(w[~relevant])))
    print(
        f"{name:<18} val MSE {val:.4f}   exact zeros {zeros:2d}   "
        f"median |w| of the irrelevant {typical:.2e}"
    )


# %% [markdown]
# ## Weights during training
#
# Full-batch gradient descent (`gx.sgd`, learning rate 0.05, 2,000 steps) with four
# penalties: none, L2 with lambda = 0.05 (`weight_decay = 2 * lambda`: the gradient of
# lambda w^2 is 2 lambda w), and L1 with lambda = 0.1 in two forms:
#
# - **subgradient**: add `lambda * sign(w)` to the gradient. Every weight moves by
#   `lr * lambda` towards zero at each step and overshoots it: a weight that should be
#   zero jumps back and forth around 0 and never lands on it.
# - **proximal** (ISTA): take the plain gradient step `z = w - lr * g`, then
#   soft-threshold it, `w = sign(z) * max(|z| - lr * lambda, 0)`. A weight whose step
#   ends within `lr * lambda` of zero becomes exactly 0.

# %%
lr, lam_l2, lam_l1 = 0.05, 0.05, 0.1
configs = {
    "no penalty": gx.sgd(lr),
    "L2 weight decay": gx.sgd(lr, weight_decay=2 * lam_l2),
    "L1 subgradient": gx.chain(gx.add_l1_subgradient(lam_l1), gx.sgd(lr)),
    "L1 proximal": gx.chain(gx.sgd(lr), gx.proximal_l1(lam_l1, learning_rate=lr)),
}
paths = {name: np.asarray(train(tx)) for name, tx in configs.items()}
for name, path in paths.items():
    report(name, path[-1])

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 2.8), sharey=True)
for ax, (name, path) in zip(axes, paths.items()):
    ax.plot(np.arange(1, 2001), path[:, ~relevant], color="0.55", lw=0.7)
    ax.plot(np.arange(1, 2001), path[:, relevant], lw=1.2)
    ax.set_xscale("log")
    ax.set_ylim(-0.3, 0.3)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step")
axes[0].set_ylabel("weight (zoom on 0)")
fig.suptitle("45 irrelevant weights (grey) during training; the 5 relevant leave the frame")
fig.tight_layout()
plt.show()

# %% [markdown]
# **What to look at.** Without a penalty the grey weights settle wherever the noise puts
# them. L2 shrinks every weight in proportion to its size: the grey ones get a little
# smaller, none becomes zero. L1 pulls with a constant force, so small weights head
# straight for 0; the subgradient version then chatters around it, the proximal one stops
# exactly there. The last steps up close:

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6), sharey=True)
for ax, name in zip(axes, ["L1 subgradient", "L1 proximal"]):
    ax.plot(np.arange(1961, 2001), paths[name][-40:, ~relevant], color="0.5", lw=0.8)
    ax.set_ylim(-0.008, 0.008)
    ax.set_title(f"{name}: last 40 steps", fontsize=10)
    ax.set_xlabel("step")
axes[0].set_ylabel("irrelevant weights")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Checking against closed forms
#
# With a small enough step, gradient descent converges to the minimizer of the
# penalized loss, which we can compute independently:
#
# - L2: `mean((Xw - y)^2) + lambda |w|^2` is minimized by the ridge solution
#   `w = (X'X/m + lambda I)^-1 X'y/m`;
# - L1: `mean((Xw - y)^2) + lambda |w|_1` is scikit-learn's `Lasso(alpha=lambda/2)`
#   (scikit-learn's loss is half the MSE).
#
# The proximal iterates reach the lasso solution, zeros included; the subgradient
# iterates stay about `lr * lambda` away from it.

# %%
Xn, yn = np.asarray(X, np.float64), np.asarray(y, np.float64)


def ridge(lam):
    return np.linalg.solve(Xn.T @ Xn / n_train + lam * np.eye(n_features), Xn.T @ yn / n_train)


lasso = Lasso(alpha=lam_l1 / 2, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(Xn, yn).coef_
dist = {
    "L2 weight decay vs ridge": np.max(np.abs(paths["L2 weight decay"][-1] - ridge(lam_l2))),
    "L1 proximal vs Lasso": np.max(np.abs(paths["L1 proximal"][-1] - lasso)),
    "L1 subgradient vs Lasso": np.max(np.abs(paths["L1 subgradient"][-1] - lasso)),
}
for name, d in dist.items():
    print(f"{name:<25} max |diff| below 1e-5: {d < 1e-5}" + (f" ({d:.3f})" if d >= 1e-5 else ""))
w_prox = paths["L1 proximal"][-1]
same = bool(np.all((lasso == 0) == (w_prox == 0)))
n_lasso, n_prox = int(np.sum(lasso == 0)), int(np.sum(w_prox == 0))
print(f"zeros: Lasso {n_lasso}, proximal {n_prox}, the same weights: {same}")

# %% [markdown]
# ## Regularization paths
#
# The final weights as the strength lambda grows, 15 strengths per method, trained in
# one call: a transform is a value whose hyperparameters are array leaves, so `jax.vmap`
# over a function that *builds* the transform from a traced lambda trains all strengths
# in parallel.

# %%
lams = jnp.logspace(-3, 0.5, 15)


def final_weights(make_tx, strengths=lams):
    """Final weights of 2,000 full-batch steps, one row per strength."""
    return np.asarray(jax.jit(jax.vmap(lambda s: train(make_tx(s))[-1]))(strengths))


sweeps = {
    "L2 weight decay": final_weights(lambda lam: gx.sgd(lr, weight_decay=2 * lam)),
    "L1 subgradient": final_weights(lambda lam: gx.chain(gx.add_l1_subgradient(lam), gx.sgd(lr))),
    "L1 proximal": final_weights(
        lambda lam: gx.chain(gx.sgd(lr), gx.proximal_l1(lam, learning_rate=lr))
    ),
}
for name, ws in sweeps.items():
    print(f"{name:<16} exact zeros per lambda: {[int(np.sum(w == 0)) for w in ws]}")

# %%
# figure: 03_regularization
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
for ax, (name, ws) in zip(axes, sweeps.items()):
    ax.plot(lams, ws[:, ~relevant], color="0.55", lw=0.7)
    ax.plot(lams, ws[:, relevant], lw=1.5)
    ax.set_xscale("log")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("lambda")
axes[0].set_ylabel("final weight")
fig.suptitle("Regularization paths: 5 relevant weights (colour), 45 irrelevant (grey)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **What to look at.** L2 shrinks all weights together and smoothly; none reaches 0. L1
# sets the irrelevant weights to 0 first, at small lambda, and the relevant ones one by
# one later: the smallest true weight (0.5) goes first. The subgradient path only
# *looks* like the proximal one: its "zeros" are weights jumping around 0.

# %% [markdown]
# ## Validation error vs strength

# %%
val_mse = {
    name: np.asarray(jax.vmap(lambda w: mse(w, X_val, y_val))(jnp.asarray(ws)))
    for name, ws in sweeps.items()
}
ols = np.linalg.lstsq(Xn, yn, rcond=None)[0]
ols_val = float(mse(jnp.asarray(ols, jnp.float32), X_val, y_val))
print(f"least squares (no penalty)   val MSE {ols_val:.4f}")
for name, v in val_mse.items():
    i = int(np.argmin(v))
    print(f"{name:<28} best val MSE {v[i]:.4f} at lambda = {float(lams[i]):.3g}")

# %% [markdown]
# L1 beats L2 here because the true weights are sparse: L1 removes the irrelevant
# features, L2 only shrinks them, and shrinks the 5 useful ones as much. Too strong a
# penalty of either kind shrinks the useful weights and the error climbs.
#
# ## Coupled L2 vs decoupled weight decay with Adam
#
# With plain SGD, adding `wd * w` to the gradient and shrinking the weights by
# `lr * wd * w` after the step are the same thing. With Adam they are not:
#
# - `gx.adam(lr, weight_decay=wd)` (coupled, torch `Adam(weight_decay=...)`): `wd * w` is
#   added to the gradient *before* Adam divides by `sqrt(v)`. Adam stops where its input
#   is zero, `grad MSE + wd * w = 0`: the ridge solution with lambda = wd / 2, like SGD.
# - `gx.adamw(lr, weight_decay=wd)` (decoupled, Loshchilov & Hutter 2019, torch `AdamW`):
#   `w -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * w)`. It stops where Adam's *normalized*
#   step balances the decay, `m_hat / (sqrt(v_hat) + eps) = -wd * w`. The normalized step
#   is at most about 1 in size per weight, so at rest `|w_i| <= about 1 / wd`: decoupled
#   decay acts like a box around zero rather than like a penalty on the loss.
#
# Learning rate 0.01, the same `weight_decay` values for both, 2,000 full-batch steps:

# %%
lr_adam = 0.01
wds = 2 * lams
w_adam = final_weights(lambda wd: gx.adam(lr_adam, weight_decay=wd), wds)
w_adamw = final_weights(lambda wd: gx.adamw(lr_adam, weight_decay=wd), wds)
d_ridge = max(np.max(np.abs(w - ridge(float(wd) / 2))) for w, wd in zip(w_adam, wds))
print(f"adam (coupled): max |w - ridge(wd / 2)| over all wd below 1e-3: {d_ridge < 1e-3}")
print("wd        1/wd     max|w| adam  max|w| adamw")
for i in [6, 9, 11, 13]:
    wd = float(wds[i])
    print(
        f"{wd:<9.3g} {1 / wd:<8.3g} {np.abs(w_adam[i]).max():<12.4f} {np.abs(w_adamw[i]).max():.4f}"
    )

# %%
# figure: 03_regularization_adamw
val_adam = {
    "sgd, weight_decay (ridge)": val_mse["L2 weight decay"],
    "adam, coupled L2": np.asarray(jax.vmap(lambda w: mse(w, X_val, y_val))(w_adam)),
    "adamw, decoupled": np.asarray(jax.vmap(lambda w: mse(w, X_val, y_val))(w_adamw)),
}
for name, v in val_adam.items():
    i = int(np.argmin(v))
    print(f"{name:<26} best val MSE {v[i]:.4f} at weight_decay = {float(wds[i]):.3g}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for name, v in val_mse.items():
    axes[0].plot(lams, v, marker="o", ms=3, label=name)
for name, v in val_adam.items():
    axes[1].plot(wds, v, marker="o", ms=3, label=name)
titles = ["SGD: L1 vs L2", "coupled vs decoupled"]
for ax, title, xlabel in zip(axes, titles, ["lambda", "weight_decay"]):
    ax.axhline(ols_val, color="k", ls="--", lw=0.8, label="least squares")
    ax.set_xscale("log")
    ax.set_ylim(0.9, 3)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
axes[0].set_ylabel("validation MSE")
axes[2].plot(wds, np.abs(w_adam).max(1), "C1", marker="o", ms=3, label="adam, coupled L2")
axes[2].plot(wds, np.abs(w_adamw).max(1), "C2", marker="o", ms=3, label="adamw, decoupled")
axes[2].plot(wds, 1 / wds, "k:", label="1 / weight_decay")
axes[2].set(xscale="log", ylim=(0, 2.5), xlabel="weight_decay", ylabel="max |w|")
axes[2].set_title("largest final weight", fontsize=10)
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# **What to look at.** In the middle, coupled Adam lies on SGD's curve: both converge to
# the ridge solution. AdamW does nothing useful until `1 / wd` reaches the largest true
# weight (2, at `wd` about 0.5); from there on the large weights are held at `1 / wd`
# (right panel) whatever the data say, and the error shoots up. With the same number,
# coupled L2 and decoupled decay are different regularizers. In deep networks, trained
# with mini-batch noise and far from convergence, decoupling is what makes the decay
# act alike on weights with large and small gradients (Adam's division by `sqrt(v)`
# weakens a coupled penalty exactly where gradients are large): that is why AdamW is
# the usual choice there.
#
# **Try next.**
# - Make the true weights dense (`w_true = rng.normal(size=50)`): L2 should now win.
# - Fewer training examples (`n_train = 60`): the gap to least squares grows.
# - Mini-batches instead of full batches, then compare adam and adamw again.
# - A learning-rate schedule in `gx.proximal_l1(lam, learning_rate=schedule)`: the
#   threshold must follow the same schedule as the step it comes after.
# - Exclude a bias from the decay with `weight_decay_mask` (see the README).
