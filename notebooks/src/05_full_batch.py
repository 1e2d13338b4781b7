# %% [markdown]
# # 05 · Full-batch optimization: L-BFGS, conjugate gradient, line searches
#
# When the whole data set fits in one batch, the gradient is exact and the loss along a
# direction can be evaluated as often as we like. The course notes (seed 001,
# "Optimization") give gradient descent as `w_{k+1} = w_k - gamma_k grad f(w_k)`, note
# that "in practice large gamma are used (gamma_opt < gamma < 2 gamma_opt), because the
# optimal gamma is not known", and conclude: "if full batch is needed, it is better to use
# L-BFGS or conjugate gradients and not vanilla GD". This notebook checks that claim.
#
# - **Line search**: instead of guessing gamma, try steps along the direction `d` until
#   the loss decreases enough: *Armijo* `f(w + a d) <= f(w) + c1 a grad f(w).d` (backtracking:
#   halve `a` until it holds), or the *strong Wolfe* conditions, which also ask the slope
#   to flatten, `|grad f(w + a d).d| <= c2 |grad f(w).d|` (bracketing and zoom).
#   `gx.gradient_descent_linesearch()` = steepest descent + backtracking.
# - **Nonlinear conjugate gradient**: `d_k = -g_k + beta_k d_{k-1}`; the four classic
#   `beta` formulas are `gx.conjugate_gradient(method)` with `method` in
#   `fletcher_reeves` (`g_k.g_k / g_{k-1}.g_{k-1}`), `polak_ribiere` (PR+,
#   `max(0, g_k.y / g_{k-1}.g_{k-1})`, SciPy's choice), `hestenes_stiefel` (`g_k.y / d_{k-1}.y`)
#   and `dai_yuan` (`g_k.g_k / d_{k-1}.y`), with `y = g_k - g_{k-1}`. Memory: two vectors.
# - **L-BFGS**: `d_k = -H_k g_k` with `H_k` a quasi-Newton estimate of the inverse Hessian
#   built from the last 10 pairs `(s, y)` of steps and gradient changes. `gx.lbfgs()`,
#   with a strong Wolfe search (SciPy L-BFGS-B's constants).
#
# Everything runs through `gx.minimize(fun, x0, tx, max_steps, tol)`: the whole
# optimization in one compiled `jax.lax.while_loop`, stopping when `max |g_i| <= tol`, or
# when the relative decrease of `f` is at most `ftol` (2.2e-9), as SciPy does.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # float64, to compare with SciPy

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

import gradxform as gx  # noqa: E402
from gradxform import problems  # noqa: E402

# %% [markdown]
# ## Two problems
#
# - **Logistic regression** on scikit-learn's breast-cancer data (569 patients, 30
#   features standardized, plus a bias), with a small L2 penalty on the weights (not the
#   bias) so that the minimum is unique: `f(w) = mean(log(1 + e^z) - y z) + 5e-4 |w|^2`,
#   `z = Xw`. Convex and smooth: the easy case.
# - **Rosenbrock-100** (`gradxform.problems.rosenbrock`): the extended Rosenbrock
#   function `f(x) = sum_{i<100} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`, from `x = 0`.
#   Minimum 0 at `x = 1`, at the end of a long, narrow, curved valley.

# %%
data = load_breast_cancer()
features = (data.data - data.data.mean(0)) / data.data.std(0)
features = jnp.asarray(np.concatenate([features, np.ones((len(features), 1))], axis=1))
labels = jnp.asarray(data.target, jnp.float64)


def logistic(w):
    z = features @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - labels * z) + 5e-4 * jnp.sum(w[:-1] ** 2)


tasks = {
    "logistic regression (breast cancer)": (logistic, jnp.zeros(31)),
    "Rosenbrock-100": (problems.rosenbrock, jnp.zeros(100)),
}
methods = {
    "L-BFGS": gx.lbfgs(),
    "CG Fletcher-Reeves": gx.conjugate_gradient("fletcher_reeves"),
    "CG Polak-Ribiere": gx.conjugate_gradient("polak_ribiere"),
    "CG Hestenes-Stiefel": gx.conjugate_gradient("hestenes_stiefel"),
    "CG Dai-Yuan": gx.conjugate_gradient("dai_yuan"),
    "GD + line search": gx.gradient_descent_linesearch(),
}
for name, (fun, x0) in tasks.items():
    print(f"{name}: {x0.size} parameters, f(x0) = {float(fun(x0)):.6g}")

# %% [markdown]
# ## `gx.minimize`
#
# Each method on each problem, at most 5,000 iterations, `tol = 1e-5`. `num_steps` counts
# iterations, `num_evals` evaluations of `f` and its gradient (each line-search trial
# costs one; the first evaluation at `x0` is included).

# %%
max_steps, tol = 5000, 1e-5
results = {}
for task, (fun, x0) in tasks.items():
    print(task)
    for name, tx in methods.items():
        r = gx.minimize(fun, x0, tx, max_steps=max_steps, tol=tol)
        results[task, name] = r
        print(
            f"  {name:<20} {gx.MinimizeStatus(int(r.status)).name:<10} "
            f"steps {int(r.num_steps):5d}  evals {int(r.num_evals):5d}  "
            f"f {float(r.value):.6e}  max|g| {float(jnp.max(jnp.abs(r.grad))):.1e}"
        )

# %% [markdown]
# ## The value along the way
#
# `gx.minimize` returns the end point only. Two ways to see the path:
#
# - **Call it again with a larger `max_steps`.** `max_steps` is a traced argument, so a
#   new value does not recompile; each call reruns the same deterministic iterations
#   from `x0` and stops after `k` of them. About 80 checkpoints per curve cost well under a
#   second here.
# - **Write the loop yourself**, as the README's "Your own loop" shows: pass `value`,
#   `grad` and `value_fn` to `update`, then read the value and gradient at the new point
#   from the line search's state (the last member of the chain, `state[-1]`), which also
#   counts the evaluations it made and the step it took. Five L-BFGS iterations:

# %%
tx = gx.lbfgs()
w, state = jnp.zeros(31), tx.init(jnp.zeros(31))
value, grad = jax.value_and_grad(logistic)(w)


@jax.jit
def lbfgs_step(w, state, value, grad):
    updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=logistic)
    return gx.apply_updates(w, updates), state


for k in range(1, 6):
    w, state = lbfgs_step(w, state, value, grad)
    ls = state[-1]  # the zoom line search's state
    value, grad = ls.value, ls.grad
    print(
        f"iteration {k}: f {float(value):.8f}  step size {float(ls.step_size):.4g}  "
        f"evaluations {int(ls.num_evals)}  {gx.LineSearchStatus(int(ls.status)).name}"
    )

# %% [markdown]
# The curves, from checkpoints of `gx.minimize` (iteration `k`, value, evaluations so far):


# %%
def checkpoints(fun, x0, tx, n_steps):
    ks = np.concatenate([np.geomspace(1, max(n_steps, 1), 40), np.linspace(0, n_steps, 40)])
    ks = np.unique(ks.round().astype(int))
    rs = [gx.minimize(fun, x0, tx, max_steps=int(k), tol=tol) for k in ks]
    values = np.array([float(r.value) for r in rs])
    return ks, values, np.array([int(r.num_evals) for r in rs])


curves = {}
for task, (fun, x0) in tasks.items():
    for name, tx in methods.items():
        curves[task, name] = checkpoints(fun, x0, tx, int(results[task, name].num_steps))

# %% [markdown]
# ## SciPy
#
# `scipy.optimize.minimize` with `jac=True` takes a function returning the value and the
# gradient: JAX's `jax.value_and_grad`, jitted, converted to NumPy. Same tolerance
# (`gtol = 1e-5`; SciPy's default `ftol` for L-BFGS-B is the 2.2e-9 we use; SciPy's CG
# has no relative-decrease test and stops on the gradient only, so on Rosenbrock it goes
# on to a smaller `f` than our CG, which stops on `ftol`). A callback records the value
# after each iteration, a counter the evaluations.


# %%
def scipy_run(fun, x0, method):
    value_and_grad = jax.jit(jax.value_and_grad(fun))
    evals, values, counts = [0], [float(fun(x0))], [1]

    def f(x):
        evals[0] += 1
        v, g = value_and_grad(x)
        return float(v), np.asarray(g)

    def callback(intermediate_result):
        values.append(float(intermediate_result.fun))
        counts.append(evals[0])

    options = {"gtol": tol, "maxiter": max_steps}
    res = scipy.optimize.minimize(
        f, np.asarray(x0), jac=True, method=method, callback=callback, options=options
    )
    return res, (np.arange(len(values)), np.asarray(values), np.asarray(counts))


scipy_methods = {"SciPy L-BFGS-B": "L-BFGS-B", "SciPy CG": "CG"}
for task, (fun, x0) in tasks.items():
    print(task)
    for name, method in scipy_methods.items():
        res, curves[task, name] = scipy_run(fun, x0, method)
        print(
            f"  {name:<15} success {res.success!s:<5} steps {res.nit:5d}  evals {res.nfev:5d}  "
            f"f {res.fun:.6e}"
        )
    for name in ("L-BFGS", "CG Polak-Ribiere"):
        r = results[task, name]
        print(f"  gx {name:<16} steps {int(r.num_steps):5d}  evals {int(r.num_evals):5d}")

# %% [markdown]
# ## Convergence curves
#
# The gap `f - f*` on a log scale, against iterations and against evaluations of `f` and
# its gradient (the honest cost: an L-BFGS iteration and a CG iteration differ in how
# many trial points their line searches need). `f*` is 0 for Rosenbrock; for the logistic
# regression, the value of a tighter L-BFGS solve (`tol = 1e-10`). The logistic
# regression's x-axes are logarithmic (gradient descent takes thousands of iterations),
# Rosenbrock's linear and cut at 3,000.

# %%
f_star = {
    "logistic regression (breast cancer)": float(
        gx.minimize(logistic, jnp.zeros(31), gx.lbfgs(), max_steps=1000, tol=1e-10, ftol=0.0).value
    ),
    "Rosenbrock-100": 0.0,
}
print(f"logistic regression: f* = {f_star['logistic regression (breast cancer)']:.12f}")

# %%
# figure: 05_full_batch
styles = {name: {"color": f"C{i}", "lw": 1.3} for i, name in enumerate(methods)}
styles["SciPy L-BFGS-B"] = {"color": "C0", "ls": "--", "lw": 2.5, "alpha": 0.5}
styles["SciPy CG"] = {"color": "C2", "ls": "--", "lw": 2.5, "alpha": 0.5}
fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
for row, task in zip(axes, tasks):
    for name, style in styles.items():
        iterations, values, evals = curves[task, name]
        gap = np.maximum(values - f_star[task], 1e-16)
        row[0].plot(iterations, gap, label=name, **style)
        row[1].plot(evals, gap, label=name, **style)
    row[0].set_ylabel(f"{task}\nf - f*")
    for ax, xlabel in zip(row, ["iteration", "evaluations of f and grad f"]):
        ax.set(yscale="log", xlabel=xlabel)
        if task == "Rosenbrock-100":
            ax.set(xlim=(0, 3000), ylim=(1e-12, 1e3))
        else:
            ax.set(xscale="log", ylim=(1e-9, 1))
axes[0, 1].legend(fontsize=8, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# **What to look at.**
# - On the logistic regression every method converges, but gradient descent needs
#   thousands of iterations where L-BFGS needs about 30: the features are correlated,
#   so the loss is an elongated bowl, and steepest descent zigzags across it. CG and
#   L-BFGS build directions that do not undo the previous steps.
# - On Rosenbrock-100 gradient descent is hopeless (still far from the minimum after
#   5,000 iterations); the CG variants need 2 to 3 times L-BFGS's iterations, and more
#   evaluations per iteration (their line search asks for `c2 = 0.4`, a more exact step).
# - Dashed: SciPy. Its L-BFGS-B and ours take the same path on the logistic regression
#   (same iterations and evaluations) and almost the same on Rosenbrock; SciPy's CG
#   (Polak-Ribiere) and ours differ in details (restarts, initial step, stopping test)
#   but not in kind; `gx.minimize(..., ftol=0.0)` stops on the gradient only, as SciPy's CG.
# - An L-BFGS iteration costs about `4 x memory_size` = 40 vector operations more than a
#   CG iteration (its two-loop recursion): cheap next to an evaluation of `f` on real
#   data, which is why L-BFGS is the usual first choice; CG wins when memory is short.
#
# **Try next.**
# - `gx.lbfgs(memory_size=3)` or `30`: how much memory does Rosenbrock need?
# - The same methods on the ill-conditioned quadratic `problems.quadratic(cond=1e6)`.
# - `gx.minimize(fun, x0, gx.adam(0.01))`: a stochastic-style optimizer on a full batch.
# - Box constraints: `gx.lbfgs(lower=0.0)` keeps every coordinate non-negative.
