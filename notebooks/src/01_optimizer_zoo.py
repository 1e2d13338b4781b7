# %% [markdown]
# # 01 · The optimizer zoo
#
# Every classic optimizer of the course notes, run with gradxform on three small 2-D
# functions, so that you can *see* what each update rule does:
#
# - **Rosenbrock** f(x, y) = 100 (y - x²)² + (1 - x)²: a curved, narrow valley. Start
#   (-1.2, 1), minimum 0 at (1, 1).
# - **Beale** f(x, y) = (1.5 - x + xy)² + (2.25 - x + xy²)² + (2.625 - x + xy³)²: flat
#   plateaus and steep walls. Start (1, 1), minimum 0 at (3, 0.5).
# - **A saddle**: f(x, y) = 5x² - y²/2 + y⁴/16. The origin is a saddle point (gradient 0,
#   curvature +10 along x and -1 along y); the quartic term makes f bounded below, with two
#   minima f = -1 at (0, ±2). We start at (-1.5, 10⁻⁶), almost exactly on the line y = 0
#   that leads into the saddle.
#
# The first two are the ones in `gradxform.problems`; the saddle is defined below. We run
# everything in float64 (`jax_enable_x64`), which the exactness checks further down need.
#
# Sources: the course notes in `seeds/`: seed 001 (NYU Deep Learning notes, Spanish),
# seed 002 (Portuguese notes "Algoritmos de Otimização"), seed 003 (Universidad de Sevilla
# slides, Tema 2.2, Spanish).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

jax.config.update("jax_enable_x64", True)

import gradxform as gx  # noqa: E402
from gradxform import problems  # noqa: E402


def saddle(x):
    """5 x^2 - y^2 / 2 + y^4 / 16: saddle at the origin, minima -1 at (0, +-2)."""
    return 5 * x[0] ** 2 - 0.5 * x[1] ** 2 + x[1] ** 4 / 16


# name: (f, start, minimum value f*, minimizers, plot box (xmin, xmax, ymin, ymax), steps)
PROBLEMS = {
    "Rosenbrock": (problems.rosenbrock, (-1.2, 1.0), 0.0, [(1.0, 1.0)], (-2, 2, -1, 3), 3000),
    "Beale": (problems.beale, (1.0, 1.0), 0.0, [(3.0, 0.5)], (-0.5, 4.5, -1.5, 2), 3000),
    "saddle": (saddle, (-1.5, 1e-6), -1.0, [(0, 2), (0, -2)], (-2, 2, -3, 3), 300),
}
for name, (f, x0, fstar, _, _, steps) in PROBLEMS.items():
    print(f"{name:<11} f(start) = {float(f(jnp.array(x0))):9.4f}   f* = {fstar:g}   {steps} steps")

# %% [markdown]
# ## The update rules, as the notes write them
#
# - **Gradient descent**, seed 001: w_{k+1} = w_k - γ_k ∇f(w_k). In gradxform: `gx.sgd(lr)`
#   fed the full gradient.
# - **Momentum, heavy-ball form**, seed 003: W^{t+1} = W^t - α dJ/dW(W^t) + β ΔW^t, with
#   ΔW^t = W^t - W^{t-1} the previous step (seed 001 writes the same, "stochastic heavy
#   ball", and adds "the PyTorch implementation is slightly different"): `gx.heavy_ball`.
# - **Momentum, PyTorch form**, seed 002: v_t = γ v_{t-1} + ∇L, w_{t+1} = w_t - η v_t:
#   `gx.momentum(lr, momentum)`, the same as `gx.sgd(lr, momentum=...)`.
# - **Nesterov (NAG)**, seed 003: θ^{t+1} = θ^t - α dJ/dθ(θ^t + β Δθ^t) + β Δθ^t, the
#   gradient taken at the look-ahead point: `gx.nesterov(lr, momentum)`.
# - **Adagrad, Adadelta, RMSprop, Adam**, seed 003: per-coordinate steps from running
#   gradient statistics (written out and reproduced exactly in notebook 07): `gx.adagrad`,
#   `gx.adadelta`, `gx.rmsprop`, `gx.adam`.
# - **RAdam**, seed 003: "a variation of Adam ... dynamic, automatic adjustment of the
#   adaptive learning rate" (Liu et al. 2019; no formula in the notes): `gx.radam`.
# - **AdamW** and **Lion**, not in the notes: Adam with decoupled weight decay (Loshchilov &
#   Hutter 2019), and the sign of an interpolated momentum (Chen et al. 2023): `gx.adamw`,
#   `gx.lion`.
# - **L-BFGS**, seed 001: "if full batch is needed, better use L-BFGS or conjugate
#   gradients than vanilla GD": `gx.minimize(f, x0, gx.lbfgs())`.
#
# Momentum is 0.9 throughout ("β is usually 0.9 or 0.99", seed 001); the adaptive methods
# keep their usual defaults (Adam's β₁ = 0.9, β₂ = 0.999; RMSprop's decay 0.9, the notes'
# ρ), and AdamW its default weight decay 10⁻². The figures show momentum in the PyTorch
# form; the heavy-ball form gives the same trajectory (checked further down).

# %%
OPTIMIZERS = {
    "gradient descent": lambda lr: gx.sgd(lr),
    "momentum": lambda lr: gx.momentum(lr, momentum=0.9),
    "Nesterov": lambda lr: gx.nesterov(lr, momentum=0.9),
    "Adagrad": lambda lr: gx.adagrad(lr),
    "Adadelta": lambda lr: gx.adadelta(lr),
    "RMSprop": lambda lr: gx.rmsprop(lr, decay=0.9),
    "Adam": lambda lr: gx.adam(lr),
    "RAdam": lambda lr: gx.radam(lr),
    "AdamW": lambda lr: gx.adamw(lr, weight_decay=1e-2),
    "Lion": lambda lr: gx.lion(lr),
}
STYLE = {name: dict(color=plt.cm.tab10(i)) for i, name in enumerate(OPTIMIZERS)}
STYLE["L-BFGS"] = dict(color="black", linestyle="--")


def descend(tx, f, x0, steps):
    """The iterates x_0, ..., x_steps of the transform tx on f (one compiled scan)."""

    def step(carry, _):
        x, state = carry
        updates, state = tx.update(jax.grad(f)(x), state, x)
        x = gx.apply_updates(x, updates)
        return (x, state), x

    _, xs = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
    return jnp.concatenate([x0[None], xs])


# %% [markdown]
# ## Choosing the learning rates
#
# Each optimizer gets its own learning rate on each problem, picked from a grid of quarter
# decades between 10⁻⁵ and 10 (the learning rate is an argument of the compiled run: the
# hyperparameters of a gradxform transform may be traced values, so one compilation serves
# the whole grid). We keep the one whose loss gap f - f* is lowest *on average over the
# run* (mean of log₁₀ of the gap, floored at 10⁻¹²), i.e. the fastest, not only the best at
# the end. Runs whose loss ever rises above its starting value (including those that blow
# up) are discarded.

# %%
LRS = 10.0 ** np.arange(-5, 1.01, 0.25)


def sweep(make, f, x0, steps):
    """Iterates for every learning rate of LRS: array (len(LRS), steps + 1, 2)."""
    run = jax.jit(lambda lr: descend(make(lr), f, x0, steps))  # compiled once, lr traced
    return np.stack([run(lr) for lr in LRS])


runs = {}  # (problem, optimizer) -> (chosen lr, iterates, loss gaps)
lr_curves = {}  # (problem, optimizer) -> final gap for every lr of LRS
for pname, (f, x0, fstar, _, _, steps) in PROBLEMS.items():
    for oname, make in OPTIMIZERS.items():
        xs = sweep(make, f, jnp.array(x0), steps)
        gaps = np.asarray(jax.vmap(jax.vmap(f))(xs)) - fstar
        ok = (gaps <= gaps[:, :1]).all(axis=1)  # never above the start (NaN fails too)
        score = np.where(ok, np.log10(np.maximum(gaps, 1e-12)).mean(axis=1), np.inf)
        best = int(np.argmin(score))
        runs[pname, oname] = (LRS[best], xs[best], gaps[best])
        lr_curves[pname, oname] = np.where(ok, gaps[:, -1], np.nan)

# L-BFGS has no learning rate: a line search picks each step. gx.minimize runs the whole
# loop; its trajectory is the final point of runs stopped after k = 0, 1, 2, ... steps
# (max_steps is traced, so this does not recompile).
for pname, (f, x0, fstar, _, _, steps) in PROBLEMS.items():
    full = gx.minimize(f, jnp.array(x0), gx.lbfgs(), max_steps=steps)
    k = int(full.num_steps)
    xs = np.stack(
        [gx.minimize(f, jnp.array(x0), gx.lbfgs(), max_steps=i).params for i in range(k + 1)]
    )
    runs[pname, "L-BFGS"] = (np.nan, xs, np.asarray(jax.vmap(f)(xs)) - fstar)
    status = gx.MinimizeStatus(int(full.status)).name
    print(
        f"L-BFGS on {pname}: {status} after {k} steps, "
        f"{int(full.num_evals)} evaluations of f and its gradient"
    )

print()
print(f"{'':<17}" + "".join(f"{p:>24}" for p in PROBLEMS))
print(f"{'':<17}" + "".join(f"{'lr':>10}{'final f - f*':>14}" for _ in PROBLEMS))
for oname in [*OPTIMIZERS, "L-BFGS"]:
    row = "".join(f"{runs[p, oname][0]:>10.3g}{runs[p, oname][2][-1]:>14.2e}" for p in PROBLEMS)
    print(f"{oname:<17}{row}")


# %% [markdown]
# ## Trajectories and loss curves
#
# Left: the path of each optimizer over the contours of f (log-spaced levels; the star is
# the minimum, the circle the start). Right: the loss gap f - f* against the step, on a
# log scale. All optimizers share one color across the figures; L-BFGS is the dashed black
# line.


# %%
def contours(ax, f, fstar, box, n=200):
    xx, yy = np.meshgrid(np.linspace(box[0], box[1], n), np.linspace(box[2], box[3], n))
    zz = np.asarray(jax.vmap(f)(jnp.stack([xx.ravel(), yy.ravel()], axis=1))).reshape(xx.shape)
    levels = np.logspace(-3, np.log10(zz.max() - fstar), 15)
    ax.contour(xx, yy, zz - fstar, levels=levels, colors="0.8", linewidths=0.6)
    ax.set_xlim(box[:2])
    ax.set_ylim(box[2:])


FAMILIES = {
    "gradient descent, momentum, L-BFGS": ["gradient descent", "momentum", "Nesterov", "L-BFGS"],
    "adaptive methods": ["Adagrad", "Adadelta", "RMSprop", "Adam", "RAdam", "AdamW", "Lion"],
}


def show(pname):
    f, x0, fstar, xstar, box, steps = PROBLEMS[pname]
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 4))
    for ax, (family, names) in zip(axes[:2], FAMILIES.items()):
        contours(ax, f, fstar, box)
        for oname in names:
            xs = runs[pname, oname][1]
            ax.plot(xs[:, 0], xs[:, 1], lw=1.2, **STYLE[oname])
        ax.plot(*x0, "o", color="k")
        for xm in xstar:
            ax.plot(*xm, "*", color="gold", markersize=14, markeredgecolor="k")
        ax.set_title(f"{pname}: {family}", fontsize=10)
    for oname in [*OPTIMIZERS, "L-BFGS"]:
        lr, _, gaps = runs[pname, oname]
        label = oname if np.isnan(lr) else f"{oname} (lr {lr:.2g})"
        axes[2].semilogy(np.maximum(gaps, 1e-16), lw=1.2, label=label, **STYLE[oname])
    axes[2].set_title(f"{pname}: f - f* (floored at 1e-16)", fontsize=10)
    axes[2].set_xlabel("step")
    axes[2].set_ylim(1e-16, None)
    axes[2].legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    plt.show()


# %%
# figure: 01_optimizer_zoo
show("Rosenbrock")

# %% [markdown]
# **Rosenbrock.** Plain gradient descent crawls along the valley floor: its learning rate is
# capped by the steep walls (the next value of the grid throws the loss above its start), so
# along the flat floor it hardly moves. Momentum and Nesterov build up speed along the floor
# and get many orders of magnitude further. The adaptive methods rescale each coordinate and
# follow the valley from the first steps, but at a constant learning rate most of them then
# stall: Adagrad's steps shrink as its sum of squared gradients grows, RMSprop and Lion
# jitter at a level set by the learning rate (Lion moves every coordinate by exactly ±lr: it
# takes a sign). Adam gets to 10⁻⁷, with a spike near step 2700: close to the minimum both
# moments are tiny, and a small change of gradient gives a large normalized step. AdamW
# stops at 10⁻³: its weight decay pulls the parameters towards the origin, so it minimizes a
# different function. RAdam's first steps are plain momentum SGD (its adaptive term switches
# on only when the variance estimate is reliable), so it needs a learning rate as small as
# SGD's here, and is slow afterwards. L-BFGS converges in 36 steps.

# %%
# figure: zoo_beale
show("Beale")

# %%
# figure: zoo_saddle
show("saddle")

# %% [markdown]
# **Beale** has flat plateaus and steep walls. Gradient descent, momentum, Nesterov,
# Adagrad, Adam and RAdam all reach machine precision (Adam first, in a few hundred steps;
# momentum and Nesterov overshoot across the valley before settling). RMSprop, Adadelta and
# AdamW level off, and Lion keeps flickering at the scale of its learning rate. L-BFGS
# needs 15 steps.
#
# **The saddle.** The start is almost on the line y = 0, which leads straight into the
# saddle. Gradient descent goes to the saddle point and waits there: y grows only by a
# factor (1 + lr) per step from 10⁻⁶, hence the plateau of its loss curve at f - f* = 1 for
# about 80 steps. Momentum and Nesterov wait less, since their velocity compounds the
# growth. The adaptive methods divide each coordinate by the size of its gradient, so the
# tiny y gradient gives a step as large as the x one: they head for a minimum at once
# (except RAdam, whose first steps are momentum SGD: it first runs along y = 0 like gradient
# descent). L-BFGS *stops at the saddle*, after 2 steps: there the gradient is below its
# tolerance (10⁻⁵), which is all `gx.minimize` can check; it reports `CONVERGED` at f = 0,
# not the minimum -1. A small gradient does not mean a minimum. The notes (seeds 001 and
# 003) say that the noise of SGD helps escape local minima; it helps to leave saddles in the
# same way.

# %% [markdown]
# ## How sensitive is each optimizer to its learning rate?
#
# The final gap on Rosenbrock for every learning rate of the grid (runs whose loss rose above
# the start are left out). For gradient descent, momentum and Nesterov the best learning rate
# sits right at the edge of stability: 10⁻³ works, the next grid value (1.8·10⁻³) throws the
# loss above its start (the steep walls set the limit). The adaptive methods stay stable over
# four decades, because their step is about lr per coordinate whatever the size of the
# gradient; but with a constant rate most of them level off at a gap set by lr, and only Adam
# reaches machine precision, in a narrow band around lr = 0.05. The notes (seed 003) quote
# constant rates of 0.01 for Adagrad, 0.001 for RMSprop and 0.002 for Adam: good starting
# points, not optima.

# %%
# figure: zoo_lr_sensitivity
fig, ax = plt.subplots(figsize=(8, 4.3))
for oname in OPTIMIZERS:
    ax.loglog(
        LRS, np.maximum(lr_curves["Rosenbrock", oname], 1e-16), ".-", label=oname, **STYLE[oname]
    )
ax.set_xlabel("learning rate")
ax.set_ylabel("f - f* after 3000 steps")
ax.set_title("Rosenbrock: final loss gap against the learning rate")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The two momentum forms are the same method
#
# The heavy-ball form (seed 003) adds β times the previous *step*; the PyTorch form
# (seed 002) keeps a velocity of *gradients* and multiplies it by the learning rate. With
# v_PyTorch = -ΔW / lr the two recursions are the same, so with a constant learning rate the
# trajectories agree to rounding. They differ once the learning rate changes over time:
# the PyTorch form rescales the whole velocity by the current rate, heavy ball keeps each
# past step at the rate it was taken with.

# %%
f, x0, *_ = PROBLEMS["Rosenbrock"]
x0 = jnp.array(x0)
lr = 1e-3
pytorch = descend(gx.momentum(lr, momentum=0.9), f, x0, 3000)
heavy = descend(gx.heavy_ball(lr, momentum=0.9), f, x0, 3000)
sgd_form = descend(gx.sgd(lr, momentum=0.9), f, x0, 3000)
print(f"max |heavy_ball - momentum|        = {float(jnp.abs(heavy - pytorch).max()):.3g}")
print(f"max |sgd(momentum=0.9) - momentum| = {float(jnp.abs(sgd_form - pytorch).max()):.3g}")
decay = gx.exponential_decay(lr, decay_rate=0.999)
pytorch_s = descend(gx.momentum(decay, momentum=0.9), f, x0, 3000)
heavy_s = descend(gx.heavy_ball(decay, momentum=0.9), f, x0, 3000)
print(
    "with lr = 1e-3 * 0.999^t: max |heavy_ball - momentum| = "
    f"{float(jnp.abs(heavy_s - pytorch_s).max()):.3g}"
)

# %% [markdown]
# ## Nesterov: the notes' look-ahead form and gradxform's
#
# Seed 003 writes Nesterov's accelerated gradient with the gradient taken at the
# *look-ahead* point θ^t + β Δθ^t:
#
# Δθ^{t+1} = β Δθ^t - α ∇J(θ^t + β Δθ^t),  θ^{t+1} = θ^t + Δθ^{t+1}.
#
# `gx.nesterov` (PyTorch's `SGD(nesterov=True)`) evaluates the gradient at its own iterate p:
# b ← β b + ∇J(p), p ← p - α (∇J(p) + β b). These are the same method seen through a change
# of variables: put p^t = θ^t + β Δθ^t (the look-ahead point) and b^t = -Δθ^t / α; substituting
# into the notes' recursion gives exactly the library's. So the library's iterates should be
# the notes' look-ahead points. Below, the notes' form in a few lines of jnp, then the check.


# %%
def nesterov_notes(f, theta0, alpha, beta, steps):
    """The notes' NAG; returns the iterates theta^t and the look-ahead points."""

    def step(carry, _):
        theta, dtheta = carry
        dtheta = beta * dtheta - alpha * jax.grad(f)(theta + beta * dtheta)
        theta = theta + dtheta
        return (theta, dtheta), (theta, theta + beta * dtheta)

    _, (thetas, lookahead) = jax.lax.scan(step, (theta0, jnp.zeros_like(theta0)), length=steps)
    return jnp.concatenate([theta0[None], thetas]), jnp.concatenate([theta0[None], lookahead])


for pname in PROBLEMS:
    f, x0, _, _, _, steps = PROBLEMS[pname]
    x0 = jnp.array(x0)
    alpha = float(runs[pname, "Nesterov"][0])
    thetas, lookahead = nesterov_notes(f, x0, alpha, 0.9, steps)
    library = descend(gx.nesterov(alpha, momentum=0.9), f, x0, steps)
    print(
        f"{pname:<11} lr {alpha:.3g}, {steps} steps: "
        f"max |library - look-ahead points| = {float(jnp.abs(library - lookahead).max()):.3g},  "
        f"max |library - theta| = {float(jnp.abs(library - thetas).max()):.3g}"
    )

# %% [markdown]
# The library's iterates equal the look-ahead points to float64 rounding, and differ from the
# notes' θ^t by β Δθ^t (the second column): same method, different bookkeeping. (On Beale
# the rounding differences, different in the two forms at every step, are amplified to
# ~10⁻¹² over 3000 steps by the oscillating iteration; still twelve orders of magnitude below
# the θ column.) The PyTorch bookkeeping has the practical advantage that the gradient is
# taken at the stored parameters, so a training loop computes one gradient at p as usual.

# %% [markdown]
# ## Learning rate and momentum together
#
# Seed 001: "if you tune β you usually have to tune γ as well". Below, the final loss gap
# of heavy-ball momentum on Rosenbrock after 3000 steps for a grid of learning rates and
# momenta (all 130 runs in one `vmap`); white cells blew up.

# %%
# figure: zoo_momentum_grid
f, x0, *_ = PROBLEMS["Rosenbrock"]
grid_lrs = 10.0 ** np.arange(-5, -1.99, 0.25)
grid_mus = np.array([0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995])


@jax.jit
def final_gap(lr, mu):
    xs = descend(gx.heavy_ball(lr, momentum=mu), f, jnp.array(x0), 3000)
    return f(xs[-1])


lr_mesh, mu_mesh = np.meshgrid(grid_lrs, grid_mus)
gap = np.asarray(jax.vmap(final_gap)(jnp.asarray(lr_mesh.ravel()), jnp.asarray(mu_mesh.ravel())))
gap = gap.reshape(lr_mesh.shape)
logged = np.log10(np.clip(np.where(np.isfinite(gap) & (gap < 1e3), gap, np.nan), 1e-16, None))
fig, ax = plt.subplots(figsize=(8, 4.3))
im = ax.imshow(logged, origin="lower", aspect="auto", cmap="viridis_r")
ax.set_xticks(range(len(grid_lrs))[::2], [f"{v:.0e}" for v in grid_lrs[::2]])
ax.set_yticks(range(len(grid_mus)), [f"{v:g}" for v in grid_mus])
ax.set_xlabel("learning rate")
ax.set_ylabel("momentum β")
ax.set_title("heavy ball on Rosenbrock: log10(f - f*) after 3000 steps")
fig.colorbar(im, ax=ax)
fig.tight_layout()
plt.show()
best = np.unravel_index(np.nanargmin(logged), logged.shape)
print(
    f"best cell: lr = {grid_lrs[best[1]]:.3g}, momentum = {grid_mus[best[0]]:g}, "
    f"f - f* = {gap[best]:.3g}"
)

# %% [markdown]
# The good region is a diagonal band: more momentum wants a smaller learning rate (the
# effective step is about lr / (1 - β)), and the largest stable learning rate shrinks as β
# grows beyond 0.7. Without momentum (bottom row) no learning rate gets close in 3000 steps;
# with too much (0.995) the iterates oscillate for a long time and convergence slows again.
#
# ## What to try next
#
# - Change the start points, or the problems (`gradxform.problems.himmelblau` has four
#   minima: which one does each optimizer find?).
# - Give AdamW `weight_decay=0` and compare with Adam; give Adam `b1=0` (RMSprop with bias
#   correction).
# - Start the saddle run exactly on the ridge, (-1.5, 0): no first-order method can leave it.
#   Add noise with `gx.chain(gx.add_noise(0.01, 0.55, seed=0), ...)` and watch it escape.
# - Replace L-BFGS by `gx.conjugate_gradient()` or `gx.gradient_descent_linesearch()`.
