# %% [markdown]
# # 06 · Learning-rate schedules and normalization layers
#
# Two ways to live with a learning rate that is hard to choose.
#
# 1. **Change it during training.** The course notes (seed 003, variants of gradient
#    descent) warn that SGD "may never reach a minimum" and prescribe: "vary the learning
#    rate, decreasing its value at each iteration". A *schedule* is the learning rate as
#    a function of the step, `lr(t)`; `gradxform` has eleven.
# 2. **Make the network tolerate a larger one.** Normalization layers (seed 001,
#    "Normalization layers") are placed "between the linear layers and the
#    nonlinearities"; they "improve generalization and reduce sensitivity to the weight
#    initialization". Each normalizes its input with a mean `mu` and a standard deviation
#    `sigma` and applies learnable `a` and `b`: `y = a / sigma * (x - mu) + b`. They differ
#    only in what `mu` and `sigma` are computed over.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import gradxform as gx

# %% [markdown]
# ## Every schedule
#
# A schedule is a value (a frozen dataclass, printed as its constructor call) that maps
# the step count `t` (the number of updates already applied) to a number. Pass it as the
# learning rate of any optimizer, `gx.sgd(learning_rate=schedule)`, or to
# `gx.scale_by_learning_rate(schedule)` in a chain. Since it is a JAX function,
# `jax.vmap(schedule)(steps)` evaluates a whole curve at once. All curves below span 1,000
# steps with a peak of 0.1.

# %%
T, peak = 1000, 0.1
schedules = {
    "constant_schedule": gx.constant_schedule(peak),
    "linear_schedule": gx.linear_schedule(peak, 0.001, transition_steps=800, transition_begin=100),
    "polynomial_schedule (power 2)": gx.polynomial_schedule(
        peak, 0.001, power=2, transition_steps=T
    ),
    "exponential_decay": gx.exponential_decay(peak, decay_rate=0.5, transition_steps=200),
    "exponential_decay (staircase)": gx.exponential_decay(
        peak, decay_rate=0.5, transition_steps=200, staircase=True
    ),
    "inverse_time_decay": gx.inverse_time_decay(peak, decay_rate=1.0, transition_steps=100),
    "piecewise_constant_schedule": gx.piecewise_constant_schedule(
        boundaries=(300, 600, 850), values=(peak, 0.03, 0.01, 0.003)
    ),
    "cosine_decay_schedule": gx.cosine_decay_schedule(peak, decay_steps=T, alpha=0.01),
    "warmup_cosine_decay_schedule": gx.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps=100, decay_steps=T, end_value=0.001
    ),
    "one_cycle_schedule": gx.one_cycle_schedule(transition_steps=T, peak_value=peak),
    "sgdr_schedule (period_mult 2)": gx.sgdr_schedule(peak, period=100, period_mult=2),
    "join_schedules (warmup, then exp.)": gx.join_schedules(
        (
            gx.linear_schedule(0.0, peak, transition_steps=100),
            gx.exponential_decay(peak, decay_rate=0.99, transition_steps=10),
        ),
        boundaries=(100,),
    ),
}
steps = jnp.arange(T)
curves = {name: np.asarray(jax.vmap(s)(steps)) for name, s in schedules.items()}
print(f"{'schedule':<36}" + "".join(f"t={t:<8d}" for t in (0, 100, 300, 500, 999)))
for name, c in curves.items():
    print(f"{name:<36}" + "".join(f"{c[t]:<10.4g}" for t in (0, 100, 300, 500, 999)))
print()
print(schedules["warmup_cosine_decay_schedule"])

# %%
# figure: 06_schedules_and_normalization
fig, axes = plt.subplots(3, 4, figsize=(12, 6.5), sharex=True, sharey=True)
for ax, (name, c) in zip(axes.flat, curves.items()):
    ax.plot(steps, c, lw=1.5)
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
for ax in axes[-1]:
    ax.set_xlabel("step t")
for ax in axes[:, 0]:
    ax.set_ylabel("learning rate")
fig.suptitle("Learning-rate schedules in gradxform (1,000 steps, peak 0.1)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **What to look at.** Decays (linear, polynomial, exponential, inverse-time, step-wise,
# cosine) differ in *when* they spend the large steps: inverse-time drops fastest at
# the start, cosine keeps the rate high longest. Warmups (warmup-cosine, one-cycle,
# the joined schedule) start small, which protects a freshly initialized network from
# the large early gradients. SGDR restarts: each restart kicks the parameters out of
# the current basin, and each period is twice the last here.
#
# ## Normalization layers
#
# With activations of shape `(batch, positions, channels)` the four layers of the notes
# compute `mu` and `sigma` over:
#
# | layer | axes | in the notes' words |
# |---|---|---|
# | batch norm | batch, positions | "the same channel, for all samples of the mini-batch" |
# | layer norm | positions, channels | "all the channels of one sample" |
# | instance norm | positions | "one channel of one sample" |
# | group norm | positions, channels of a group | "a group of channels of one sample" |
#
# (The notes add that "in practice the group size is usually 32"; with 32 channels here
# we use 4 groups of 8. They also say instance norm is used for language models: there
# it is layer norm, over the channels of each token, while instance norm is common in
# image style transfer.)
#
# Instance and group norm need a positions axis (for images, the pixels). So the network
# here treats each 8x8 digit as a sequence of 8 rows: every hidden layer is a dense
# layer applied to each row (shared weights), activations `(batch, 8 rows, 32 channels)`,
# five of them, followed by a dense layer from all `8 x 32` features to the 10 classes.
# Each normalization is a few lines of `jnp`:

# %%
EPS, GROUPS = 1e-5, 4


def standardize(h, axes):
    mu = h.mean(axes, keepdims=True)
    return (h - mu) / jnp.sqrt(h.var(axes, keepdims=True) + EPS)


def batch_norm(h):  # h: (batch, positions, channels)
    return standardize(h, (0, 1))


def layer_norm(h):
    return standardize(h, (1, 2))


def instance_norm(h):
    return standardize(h, (1,))


def group_norm(h):
    b, p, c = h.shape
    return standardize(h.reshape(b, p, GROUPS, c // GROUPS), (1, 3)).reshape(b, p, c)


norms = {
    "no normalization": lambda h: h,
    "batch norm": batch_norm,
    "layer norm": layer_norm,
    "instance norm": instance_norm,
    "group norm": group_norm,
}

# %% [markdown]
# The model: `h <- relu(a * norm(h @ W + c) + b)` five times, then the classifier. Without
# normalization `a` and `b` are still there (an affine layer). He initialization, fixed
# keys. Data: scikit-learn's digits scaled to [0, 1], 1,500 for training and 297 for
# testing.

# %%
digits = load_digits()
images = (digits.data / 16.0).reshape(-1, 8, 8).astype(np.float32)
order = np.random.default_rng(0).permutation(len(images))
x_train, y_train = jnp.asarray(images[order[:1500]]), jnp.asarray(digits.target[order[:1500]])
x_test, y_test = jnp.asarray(images[order[1500:]]), jnp.asarray(digits.target[order[1500:]])
depth, width = 5, 32


def init_params(key):
    keys = jax.random.split(key, depth + 1)
    params, fan_in = {}, 8
    for i in range(depth):
        w = jax.random.normal(keys[i], (fan_in, width)) * np.sqrt(2 / fan_in)
        params[f"layer{i}"] = {
            "w": w,
            "c": jnp.zeros(width),
            "a": jnp.ones(width),
            "b": jnp.zeros(width),
        }
        fan_in = width
    w = jax.random.normal(keys[-1], (8 * width, 10)) * np.sqrt(1 / (8 * width))
    params["out"] = {"w": w, "c": jnp.zeros(10)}
    return params


def model(params, x, norm_index):
    h = x  # (batch, 8 rows, 8 pixels)
    for i in range(depth):
        p = params[f"layer{i}"]
        h = h @ p["w"] + p["c"]
        h = jax.lax.switch(norm_index, list(norms.values()), h)
        h = jax.nn.relu(p["a"] * h + p["b"])
    return h.reshape(len(h), -1) @ params["out"]["w"] + params["out"]["c"]


def loss(params, x, y, norm_index):
    return gx.softmax_cross_entropy(model(params, x, norm_index), y)


# %% [markdown]
# ## Loss curves at several learning rates
#
# The notes' plain SGD (`gx.sgd`, no momentum), mini-batches of 100 drawn with a fixed
# key, 200 steps, at five learning rates from 0.01 to 1. The learning rate is a leaf of
# the transform, so `jax.vmap` over a function that builds `gx.sgd(lr)` trains all five
# at once; the normalization is picked with `jax.lax.switch`, so one compilation serves
# all five models. Test accuracy uses the test set as one batch (batch norm then uses
# that batch's statistics, a simplification: real batch norm keeps running averages for
# testing).

# %%
learning_rates = jnp.array([0.01, 0.03, 0.1, 0.3, 1.0])
n_steps, batch_size = 200, 100
batches = jax.random.randint(jax.random.key(1), (n_steps, batch_size), 0, len(x_train))
params0 = init_params(jax.random.key(0))


@jax.jit
def train_all(norm_index):
    def train(lr):
        tx = gx.sgd(learning_rate=lr)

        def step(carry, idx):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, x_train[idx], y_train[idx], norm_index)
            updates, state = tx.update(grads, state, params)
            return (gx.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params0, tx.init(params0)), batches)
        accuracy = jnp.mean(jnp.argmax(model(params, x_test, norm_index), -1) == y_test)
        return losses, accuracy

    return jax.vmap(train)(learning_rates)


runs = {name: jax.tree.map(np.asarray, train_all(i)) for i, name in enumerate(norms)}
print(f"{'':<18}" + "".join(f"lr={float(lr):<12g}" for lr in learning_rates))
print("final training loss (mean of the last 20 steps) / test accuracy")
for name, (losses, accuracy) in runs.items():
    cells = [
        f"{np.mean(curve[-20:]):.3f}/{acc:.3f}" if np.all(np.isfinite(curve)) else "diverged"
        for curve, acc in zip(losses, accuracy)
    ]
    print(f"{name:<18}" + "".join(f"{c:<15}" for c in cells))

# %%
# figure: 06_normalization
fig, axes = plt.subplots(1, len(norms), figsize=(14, 3), sharey=True)
for ax, (name, (losses, _)) in zip(axes, runs.items()):
    for lr, curve in zip(learning_rates, losses):
        smooth = np.convolve(curve, np.ones(10) / 10, mode="valid")
        ax.plot(np.arange(len(smooth)) + 10, smooth, label=f"lr {float(lr):g}")
        if not np.all(np.isfinite(curve)):
            ax.text(100, 2e-3, f"lr {float(lr):g}: diverged", ha="center", fontsize=8)
    ax.set(title=name, xlabel="step", yscale="log", ylim=(1e-3, 5))
axes[0].set_ylabel("training loss (10-step mean)")
axes[-1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# **What to look at.** Without normalization, the best learning rate sits just below
# the one that blows up: at 1.0 the loss goes to NaN (the curve stops). Batch norm and
# instance norm train fastest at the *largest* rate. Why: a normalized layer's output
# does not change if its weights are scaled, so a too-large step that inflates the
# weights does not inflate the activations; it only makes the effective step smaller.
# Batch and instance norm standardize each channel on its own, so every column of `W`
# has this property by itself; layer and group norm standardize channels together, so
# only a common scaling of all (or a group's) columns is harmless, and one channel can
# still outgrow the others. They help less here, but they too survive the rate that
# breaks the plain network.
#
# **Try next.**
# - A warmup schedule for the plain network at lr 1.0:
#   `gx.sgd(gx.warmup_cosine_decay_schedule(0.0, 1.0, 50, 200))` inside `train`.
# - Momentum (`gx.sgd(lr, momentum=0.9)`) or Adam: which normalizations still matter?
# - `depth = 10`: how does the plain network's largest usable learning rate change?
# - Running averages for batch norm at test time (an exponential moving average of `mu`
#   and `sigma`, e.g. with `gx.ema`).
