# %% [markdown]
# # 07 · Adaptive methods: Adagrad, Adadelta, RMSprop, Adam
#
# Adaptive methods give every parameter its own step size, computed from the history of
# its gradient. This notebook
#
# 1. writes each method *exactly as the course notes write it*, in a few lines of jnp;
# 2. finds the gradxform call that reproduces it, and checks that both produce the same
#    iterates in float64 (maximum difference 0, or float64 rounding: ~10⁻¹⁶);
# 3. plots the per-coordinate step sizes each method ends up using on an ill-conditioned
#    quadratic.
#
# The formulas are from seed 003 (Universidad de Sevilla slides, Tema 2.2, Spanish), and
# Adam with bias correction from seed 004 (Portuguese video script, which codes it in
# NumPy). Seed 001 (NYU Deep Learning notes, Spanish) summarizes: "RMSProp: normalize the
# GD step by the root-mean-square of the gradient ... Adam: RMSprop with momentum + bias
# correction".

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

jax.config.update("jax_enable_x64", True)

import gradxform as gx  # noqa: E402
from gradxform import problems  # noqa: E402

# A small convex problem for the exactness checks: L2-regularized logistic regression,
# 500 examples, 10 weights (9 features and a bias), float64.
loss, w0 = problems.logistic(n=500, d=10)
w0 = jnp.asarray(w0)
STEPS = 500
print(f"loss at the start: {float(loss(w0)):.6f}, parameters: {w0.shape[0]}, dtype {w0.dtype}")


def run_notes(step, state0, f, w0, steps):
    """Iterates of a hand-written rule step(w, g, state, t) -> (w, state), t = 1, 2, ..."""

    def body(carry, t):
        w, state = carry
        w, state = step(w, jax.grad(f)(w), state, t)
        return (w, state), w

    ts = jnp.arange(1, steps + 1, dtype=w0.dtype)
    return jax.lax.scan(body, (w0, state0), ts)[1]


def run_library(tx, f, w0, steps):
    """Iterates of a gradxform transform."""

    def body(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(f)(w), state, w)
        w = gx.apply_updates(w, updates)
        return (w, state), w

    return jax.lax.scan(body, (w0, tx.init(w0)), length=steps)[1]


def compare(label, notes_iterates, tx):
    diff = float(jnp.abs(notes_iterates - run_library(tx, loss, w0, STEPS)).max())
    print(f"{label}: max |notes - gradxform| over {STEPS} steps = {diff:.3g}")


# %% [markdown]
# ## Adagrad
#
# Seed 003 (Duchi et al. 2011): "Adagrad adapts **one learning rate per parameter**":
#
# W^{t+1} = W^t - α / √(E[g²]_t + ε) · dJ/dW(W^t),  with E[g²]_t = E[g²]_{t-1} + g_t²
#
# (the running *sum* of squared gradients; "Pro: allows a constant learning rate (0.01);
# con: the accumulation can make the step infinitesimal"). The notes put ε **inside** the
# root. `gx.adagrad` follows PyTorch, which adds ε outside (√E[g²]_t + ε), so the notes'
# form is `gx.adagrad(lr, eps=ε, eps_in_sqrt=True)`.

# %%
ALPHA, EPS = 0.01, 1e-8


def adagrad_notes(w, g, s, t):
    s = s + g**2
    w = w - ALPHA / jnp.sqrt(s + EPS) * g
    return w, s


notes = run_notes(adagrad_notes, jnp.zeros_like(w0), loss, w0, STEPS)
compare("Adagrad, eps inside the root ", notes, gx.adagrad(ALPHA, eps=EPS, eps_in_sqrt=True))
compare("   vs torch's eps outside    ", notes, gx.adagrad(ALPHA, eps=EPS))

# %% [markdown]
# With ε in the other place the trajectories differ by almost 10⁻²: the two placements
# differ most for a coordinate whose gradient is tiny. With ε inside, a gradient much
# smaller than √ε = 10⁻⁴ gives a step much smaller than α; with ε outside (and ε below the
# gradient) it still gives a step of about α. An exact check tells the two formulas apart
# at once.
#
# ## Adadelta
#
# Seed 003 (Zeiler 2012) "tries to fix Adagrad's aggressive reduction of the learning rate"
# with a decaying average instead of a sum, and needs no learning rate:
#
# E[g²]_t = ρ E[g²]_{t-1} + (1 - ρ) g_t²,  RMS[g]_t = √(E[g²]_t + ε),
#
# W^{t+1} = W^t - RMS[ΔW]_{t-1} / RMS[g]_t · dJ/dW(W^t),  "normally ρ = 0.9".
#
# (The slide writes E[g²]_t on both sides of the first formula; the right-hand one is the
# previous value.) RMS[ΔW] is the same running average of the squared *steps*,
# E[ΔW²]_t = ρ E[ΔW²]_{t-1} + (1 - ρ) ΔW_t², as in Zeiler's paper. `gx.adadelta` with its
# default learning rate 1.0 is this rule.

# %%
RHO, EPS_ADADELTA = 0.9, 1e-6


def adadelta_notes(w, g, state, t):
    eg2, edw2 = state
    eg2 = RHO * eg2 + (1 - RHO) * g**2
    dw = -jnp.sqrt(edw2 + EPS_ADADELTA) / jnp.sqrt(eg2 + EPS_ADADELTA) * g
    edw2 = RHO * edw2 + (1 - RHO) * dw**2
    return w + dw, (eg2, edw2)


zeros = jnp.zeros_like(w0)
notes = run_notes(adadelta_notes, (zeros, zeros), loss, w0, STEPS)
compare("Adadelta                     ", notes, gx.adadelta(1.0, rho=RHO, eps=EPS_ADADELTA))

# %% [markdown]
# ## RMSprop
#
# Seed 003 (Tieleman and Hinton 2012, "an unpublished algorithm"), with the RMS defined on
# the Adadelta slide:
#
# W^{t+1} = W^t - α / RMS[g]_t · dJ/dW(W^t),  RMS[g]_t = √(E[g²]_t + ε),  α = 0.001.
#
# Again ε sits inside the root (PyTorch's RMSprop adds it outside), so the library call is
# `gx.rmsprop(α, decay=ρ, eps=ε, eps_in_sqrt=True)`; `decay` is the ρ of the running
# average (PyTorch calls it `alpha`). We keep the notes' ρ = 0.9.

# %%
ALPHA_RMS = 0.001


def rmsprop_notes(w, g, eg2, t):
    eg2 = RHO * eg2 + (1 - RHO) * g**2
    w = w - ALPHA_RMS / jnp.sqrt(eg2 + EPS) * g
    return w, eg2


notes = run_notes(rmsprop_notes, zeros, loss, w0, STEPS)
rmsprop = gx.rmsprop(ALPHA_RMS, decay=RHO, eps=EPS, eps_in_sqrt=True)
compare("RMSprop, eps inside the root ", notes, rmsprop)


def rmsprop_notes_reordered(w, g, eg2, t):  # the same formula, multiplied in another order
    eg2 = RHO * eg2 + (1 - RHO) * g**2
    w = w - ALPHA_RMS * (g / jnp.sqrt(eg2 + EPS))
    return w, eg2


reordered = run_notes(rmsprop_notes_reordered, zeros, loss, w0, STEPS)
compare("   written α · (g / RMS[g])  ", reordered, rmsprop)
late = float(jnp.abs(notes - run_library(rmsprop, loss, w0, STEPS))[-100:].max())
print(f"   α / RMS[g] · g, over the last 100 steps only: {late:.3g}")

# %% [markdown]
# The first RMSprop line is not ~10⁻¹⁶ but a few 10⁻¹²: α / RMS · g and α · (g / RMS) are
# the same number mathematically but round differently, and between steps 75 and 100 this
# run goes through a phase that amplifies differences in the last bit; later the iteration
# contracts and the difference is back to rounding size (third line). Written in the
# library's order (second line) the two agree bit for bit: the gap is rounding, not a
# different formula.

# %% [markdown]
# ## Adam, without and with bias correction
#
# Seed 003 (Kingma and Ba 2014), "a combination of the advantages of AdaGrad and RMSProp",
# with β₁ = 0.9, β₂ = 0.999 and "a good value is α = 0.002":
#
# m_t = β₁ m_{t-1} + (1 - β₁) g_t ("momentum!!"),  v_t = β₂ v_{t-1} + (1 - β₂) g_t²
# ("RMSprop!!"),  W^{t+1} = W^t - α / (√v_t + ε) · m_t.
#
# This version has **no bias correction**. In gradxform that is the Adam direction with
# the correction switched off, followed by the learning rate:
# `gx.chain(gx.scale_by_adam(b1, b2, eps, bias_correction=False), gx.scale_by_learning_rate(α))`.
#
# Seed 004 codes Adam with the correction (in NumPy, lr = 0.01): `m_hat = m / (1 - beta1**t)`,
# `v_hat = v / (1 - beta2**t)`, `weights -= learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)`.
# That is `gx.adam(lr, b1, b2, eps)` (PyTorch's Adam).

# %%
B1, B2 = 0.9, 0.999


def adam_notes_no_correction(w, g, state, t):
    m, v = state
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g**2
    w = w - 0.002 / (jnp.sqrt(v) + EPS) * m
    return w, (m, v)


def adam_seed004(w, g, state, t):
    m, v = state
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g**2
    m_hat = m / (1 - B1**t)
    v_hat = v / (1 - B2**t)
    w = w - 0.01 * m_hat / (jnp.sqrt(v_hat) + EPS)
    return w, (m, v)


notes = run_notes(adam_notes_no_correction, (zeros, zeros), loss, w0, STEPS)
no_correction = gx.chain(
    gx.scale_by_adam(B1, B2, EPS, bias_correction=False), gx.scale_by_learning_rate(0.002)
)
compare("Adam, no bias correction     ", notes, no_correction)
notes = run_notes(adam_seed004, (zeros, zeros), loss, w0, STEPS)
compare("Adam, bias correction        ", notes, gx.adam(0.01, b1=B1, b2=B2, eps=EPS))

# %% [markdown]
# Both agree to float64 rounding: the library's arithmetic is ordered like PyTorch's (the
# first moment, for example, is updated as m + (1 - β₁)(g - m), PyTorch's `lerp`), so a
# difference of a unit or two in the last place is expected rather than 0. The parameters
# are of order 1, where the float64 spacing is 2.2·10⁻¹⁶.
#
# ## What the bias correction does
#
# m and v start at 0, so in the first steps they are too small: m_t ≈ (1 - β₁ᵗ) E[g] and
# v_t ≈ (1 - β₂ᵗ) E[g²]. Without correction the step α m_t / √v_t is therefore multiplied by
# (1 - β₁ᵗ) / √(1 - β₂ᵗ): 3.2 at the first step, more than 6 around t = 10, and it takes
# thousands of steps to come back to 1, because β₂ = 0.999 forgets slowly. The corrected
# Adam divides that factor out.

# %%
# figure: adam_bias_correction
t = np.arange(1, 10_001)
factor = (1 - B1**t) / np.sqrt(1 - B2**t)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogx(t, factor)
ax.axhline(1, color="0.6", lw=0.8)
ax.set_xlabel("step t")
ax.set_ylabel("(1 - β₁ᵗ) / √(1 - β₂ᵗ)")
ax.set_title("uncorrected Adam's step, relative to corrected Adam's")
fig.tight_layout()
plt.show()
print(f"factor at t = 1: {factor[0]:.4g}, max {factor.max():.4g} at t = {t[factor.argmax()]}")
print(f"factor at t = 1000: {factor[999]:.4g}, at t = 10000: {factor[-1]:.4g}")

# %% [markdown]
# ## Per-coordinate step sizes on an ill-conditioned quadratic
#
# f(x, y) = ½ (x² + 100 y²): the curvature along y is 100 times that along x. Gradient
# descent has one step size for both, and it must stay below 2/100 for the y coordinate not
# to diverge; along x it then crawls (the ideal step for a quadratic is 1 / curvature: 1
# along x, 0.01 along y). The adaptive methods divide by the size of each coordinate's
# gradient, so each coordinate gets its own *effective* step size:
#
# - Adagrad: α / √(E[g²]_t + ε) (a sum: the steps can only shrink);
# - RMSprop: α / √(E[g²]_t + ε) (a decaying average);
# - Adadelta: RMS[ΔW]_{t-1} / RMS[g]_t;
# - Adam (bias-corrected): α / (√v̂_t + ε), applied to the momentum m̂_t rather than g.
#
# We read these off the library's optimizer states (`state.scale_by_rss.sum_of_squares`,
# ...) along the run; the dashed lines are the ideal 1 / curvature of each coordinate.

# %%
CURV = jnp.array([1.0, 100.0])


def quad(w):
    return 0.5 * jnp.sum(CURV * w**2)


start = jnp.array([-8.0, 0.9])
Q_STEPS = 300


def run_with_states(tx, steps=Q_STEPS):
    """Iterates and optimizer states after each step (stacked over the steps)."""

    def body(carry, _):
        w, state = carry
        g = jax.grad(quad)(w)
        updates, state = tx.update(g, state, w)
        w = gx.apply_updates(w, updates)
        return (w, state), (w, state)

    _, out = jax.lax.scan(body, (start, tx.init(start)), length=steps)
    return out


def adadelta_step_size(states, lr):
    # RMS[dW]_{t-1} / RMS[g]_t: the previous average of squared steps and the current one
    # of squared gradients (both in the state).
    prev = jnp.concatenate([jnp.zeros((1, 2)), states.delta_avg[:-1]])
    return lr * jnp.sqrt(prev + EPS_ADADELTA) / jnp.sqrt(states.sq_avg + EPS_ADADELTA)


def adam_step_size(states, lr):
    t = jnp.arange(1, Q_STEPS + 1)[:, None]
    return lr / (jnp.sqrt(states.nu / (1 - B2**t)) + EPS)


METHODS = {  # name: (transform, its learning rate, effective step size from the states)
    "gradient descent": (gx.sgd(0.019), 0.019, lambda s, lr: jnp.full((Q_STEPS, 2), lr)),
    "Adagrad": (
        gx.adagrad(1.0, eps=EPS, eps_in_sqrt=True),
        1.0,
        lambda s, lr: lr / jnp.sqrt(s.scale_by_rss.sum_of_squares + EPS),
    ),
    "RMSprop": (
        gx.rmsprop(0.05, decay=RHO, eps=EPS, eps_in_sqrt=True),
        0.05,
        lambda s, lr: lr / jnp.sqrt(s.scale_by_rms.nu + EPS),
    ),
    "Adadelta": (
        gx.adadelta(1.0, rho=RHO, eps=EPS_ADADELTA),
        1.0,
        lambda s, lr: adadelta_step_size(s.scale_by_adadelta, lr),
    ),
    "Adam": (
        gx.adam(0.5, b1=B1, b2=B2, eps=EPS),
        0.5,
        lambda s, lr: adam_step_size(s.scale_by_adam, lr),
    ),
}
results = {}
for name, (tx, lr, step_size) in METHODS.items():
    ws, states = run_with_states(tx)
    ws = jnp.concatenate([start[None], ws])
    results[name] = (np.asarray(ws), np.asarray(step_size(states, lr)))
    f_final = float(quad(ws[-1]))
    sx, sy = results[name][1][-1]
    print(f"{name:<17} f after {Q_STEPS} steps = {f_final:.3e}, final step sizes", end=" ")
    print(f"x: {sx:.3g}, y: {sy:.3g}")

# %%
# figure: 07_adaptive_methods
colors = dict(zip(METHODS, plt.cm.tab10.colors))
fig, (left, mid, right) = plt.subplots(1, 3, figsize=(13, 4))
xx, yy = np.meshgrid(np.linspace(-9, 3, 200), np.linspace(-1.2, 1.2, 200))
left.contour(xx, yy, 0.5 * (xx**2 + 100 * yy**2), levels=np.logspace(-2, 2, 15), colors="0.8")
for name, (ws, sizes) in results.items():
    left.plot(ws[:, 0], ws[:, 1], lw=1.2, color=colors[name], label=name)
    mid.loglog(np.arange(1, Q_STEPS + 1), sizes[:, 0], color=colors[name], label=f"{name}")
    mid.loglog(np.arange(1, Q_STEPS + 1), sizes[:, 1], color=colors[name], ls=":")
    right.semilogy([float(quad(w)) for w in ws], color=colors[name], label=name)
left.plot(*start, "o", color="k")
left.set_title("f = (x² + 100 y²) / 2: trajectories", fontsize=10)
left.legend(fontsize=7)
for c, label in zip([1.0, 0.01], ["1 / curvature, x", "1 / curvature, y"]):
    mid.axhline(c, color="k", ls="--", lw=0.8)
    mid.annotate(label, (1.2, c * 1.2), fontsize=7)
mid.set_title("effective step size (solid: x, dotted: y)", fontsize=10)
mid.set_xlabel("step")
right.set_title("f", fontsize=10)
right.set_xlabel("step")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look at:
#
# - **Gradient descent** (0.019, just below the stability limit 2/100 of the y coordinate)
#   uses one step size for both: y zigzags (each step flips its sign), x crawls, and f is
#   still 3·10⁻⁴ after 300 steps.
# - **Adagrad** (α = 1) starts with a step about 10 times larger along x than along y: the
#   ratio of the first gradients (8 and 90), not of the curvatures. y's step settles at
#   0.011, close to the ideal 0.01; x's keeps shrinking (the sum of squares only grows, the
#   "infinitesimal" step the notes warn about), but here it converges quickly anyway.
# - **RMSprop** (α = 0.05) forgets old gradients (ρ = 0.9), so a coordinate's step grows as
#   its gradient shrinks, until it reaches the edge of stability 2 / curvature: y's step
#   levels off at 0.02 = 2/100 and x's near 2, and the iterate oscillates for ever at f ≈
#   0.03. With a constant α, RMSprop does not converge; a decaying α would (notebook 06).
# - **Adadelta**'s steps start at about √ε / RMS[g] (4·10⁻⁴ along x, 4·10⁻⁵ along y) and
#   grow slowly as its average of squared steps builds up: no learning rate to tune, but ε
#   sets a slow start (f is still 22 after 300 steps).
# - **Adam** (α = 0.5) adapts like RMSprop, but β₂ = 0.999 forgets slowly and the momentum
#   m̂ averages the direction: its steps grow steadily (x's towards 0.5) and it converges
#   fastest here, with the oscillations typical of momentum.
#
# ## What to try next
#
# - Rotate the quadratic (`gradxform.problems.quadratic(n=2, cond=100)` has a random
#   rotation): per-coordinate step sizes help much less when the valley is not aligned with
#   the axes.
# - Compare Adam with and without bias correction on the quadratic (the `no_correction`
#   chain above) with a large α: the first steps are up to 6 times larger.
# - Replace `eps_in_sqrt=True` by the default and watch the difference in `compare` appear.
