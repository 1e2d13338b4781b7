"""Independent NumPy references of the optimizers' per-coordinate rules.

Each ``ref_*(gs, **hyperparameters)`` takes the gradients of one leaf, one NumPy array per
step, and returns one dict per step: ``"u"``, the update the rule emits, and the state
slots by field name (``"mu"``, ``"nu"``, ...). They implement the published update rules
(torch.optim documentation / the papers) in plain float64 NumPy and use nothing from
gradxform. The registry in ``helpers.py`` names them; ``test_primitives.py`` compares
gradxform with them.
"""

from __future__ import annotations

import math

import numpy as np


def ref_sgd(gs):
    # Plain gradient descent: the direction is the gradient itself.
    return [{"u": g} for g in gs]


def ref_momentum(gs, mu, dampening=0.0, nesterov=False):
    # torch.optim.SGD: buf = g on the first step (no dampening), then
    # buf = mu buf + (1 - dampening) g; d = g + mu buf (nesterov) or buf.
    buf, out = None, []
    for g in gs:
        buf = g.copy() if buf is None else mu * buf + (1 - dampening) * g
        d = g + mu * buf if nesterov else buf
        out.append({"u": d, "velocity": buf})
    return out


def ref_ema(gs, decay, debias):
    e, out = np.zeros_like(gs[0]), []
    for t, g in enumerate(gs, 1):
        e = decay * e + (1 - decay) * g
        out.append({"u": e / (1 - decay**t) if debias else e, "ema": e})
    return out


def ref_rss(gs, s0=0.0, eps=1e-10, eps_in_sqrt=False):
    # Adagrad: s = s0 + sum g^2; u = g / (sqrt(s) + eps)  (or g / sqrt(s + eps)).
    s, out = np.full_like(gs[0], s0), []
    for g in gs:
        s = s + g * g
        d = np.sqrt(s + eps) if eps_in_sqrt else np.sqrt(s) + eps
        out.append({"u": g / d, "sum_of_squares": s})
    return out


def ref_rms(gs, decay, eps, centered=False, eps_in_sqrt=False, nu0=0.0):
    # torch.optim.RMSprop: v = a v + (1 - a) g^2; centered: gavg = a gavg + (1 - a) g,
    # v~ = v - gavg^2; u = g / (sqrt(v~) + eps).
    nu, mu, out = np.full_like(gs[0], nu0), np.zeros_like(gs[0]), []
    for g in gs:
        nu = decay * nu + (1 - decay) * g * g
        var = nu
        if centered:
            mu = decay * mu + (1 - decay) * g
            var = nu - mu * mu
        d = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
        step = {"u": g / d, "nu": nu}
        if centered:
            step["mu"] = mu
        out.append(step)
    return out


def ref_adadelta(gs, rho, eps):
    # torch.optim.Adadelta: v = rho v + (1 - rho) g^2;
    # dx = sqrt(u + eps) / sqrt(v + eps) * g;  u = rho u + (1 - rho) dx^2.
    v, acc, out = np.zeros_like(gs[0]), np.zeros_like(gs[0]), []
    for g in gs:
        v = rho * v + (1 - rho) * g * g
        dx = np.sqrt(acc + eps) / np.sqrt(v + eps) * g
        acc = rho * acc + (1 - rho) * dx * dx
        out.append({"u": dx, "sq_avg": v, "delta_avg": acc})
    return out


def ref_adam(
    gs,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    bias_correction=True,
    amsgrad=False,
    nesterov=False,
):
    # Kingma & Ba / torch.optim.Adam; amsgrad: max over the raw v, then bias-correct;
    # nesterov (Dozat 2016): m_hat = b1 m_t / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t).
    m, v, vmax, out = np.zeros_like(gs[0]), np.zeros_like(gs[0]), np.zeros_like(gs[0]), []
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        bc1, bc1_next, bc2 = (
            (1 - b1**t, 1 - b1 ** (t + 1), 1 - b2**t) if bias_correction else (1.0, 1.0, 1.0)
        )
        if nesterov:
            m_hat = b1 * m / bc1_next + (1 - b1) * g / bc1
        else:
            m_hat = m / bc1
        vv = vmax if amsgrad else v
        step = {"u": m_hat / (np.sqrt(vv / bc2 + eps_root) + eps), "mu": m, "nu": v}
        if amsgrad:
            step["nu_max"] = vmax
        out.append(step)
    return out


def ref_nadam(gs, b1=0.9, b2=0.999, eps=1e-8, psi=4e-3):
    # torch.optim.NAdam: mu_t = b1 (1 - 0.5 * 0.96^(t psi)), prod = prod_{i<=t} mu_i,
    # denom = sqrt(v / (1 - b2^t)) + eps,
    # p -= lr (1 - mu_t)/(1 - prod) g/denom + lr mu_{t+1}/(1 - prod mu_{t+1}) m/denom.
    m, v, prod, out = np.zeros_like(gs[0]), np.zeros_like(gs[0]), 1.0, []
    for t, g in enumerate(gs, 1):
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod *= mu_t
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2**t)) + eps
        u = (1 - mu_t) / (1 - prod) * g / denom + mu_next / (1 - prod * mu_next) * m / denom
        out.append({"u": u, "mu": m, "nu": v, "mu_product": prod})
    return out


def ref_radam(gs, b1=0.9, b2=0.999, eps=1e-8, threshold=5.0):
    # torch.optim.RAdam (Liu et al. 2020).
    m, v, out = np.zeros_like(gs[0]), np.zeros_like(gs[0]), []
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        m_hat = m / bc1
        rho_t = rho_inf - 2 * t * b2**t / bc2
        if rho_t > threshold:
            r = math.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            u = m_hat * r * math.sqrt(bc2) / (np.sqrt(v) + eps)
        else:
            u = m_hat
        out.append({"u": u, "mu": m, "nu": v, "rectified": rho_t > threshold})
    return out


def ref_adamax(gs, b1=0.9, b2=0.999, eps=1e-8):
    # torch.optim.Adamax: u = max(b2 u, |g| + eps); p -= lr / (1 - b1^t) * m / u.
    m, n, out = np.zeros_like(gs[0]), np.zeros_like(gs[0]), []
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        n = np.maximum(b2 * n, np.abs(g) + eps)
        out.append({"u": m / ((1 - b1**t) * n), "mu": m, "nu": n})
    return out


def ref_lion(gs, b1=0.9, b2=0.99):
    # Chen et al. 2023: c = b1 m + (1 - b1) g; u = sign(c); m = b2 m + (1 - b2) g.
    m, out = np.zeros_like(gs[0]), []
    for g in gs:
        c = b1 * m + (1 - b1) * g
        # The sign must not hinge on rounding: c is exactly 0 or clearly away from it.
        assert np.all((c == 0) | (np.abs(c) > 1e-6))
        m = b2 * m + (1 - b2) * g
        out.append({"u": np.sign(c), "mu": m})
    return out


def ref_adafactor(gs, beta2_decay=-0.8, eps1=None, d=1.0, scale=1.0):
    # torch.optim.Adafactor's algorithm (docs), one leaf: w_t = t^beta2_decay;
    # ndim >= 2: R <- (1 - w) R + w mean_j g^2, C <- (1 - w) C + w mean_i g^2,
    # V = R C / max(mean_i R, eps1); else V <- (1 - w) V + w g^2;
    # U = g / max(sqrt(V), eps1); u = scale * U / max(1, RMS(U) / d). ``scale`` stands for
    # max(eps2, RMS(p)) * rho_t / lr where the caller knows it is constant.
    eps1 = np.finfo(np.float64).eps if eps1 is None else eps1
    g0 = np.asarray(gs[0], np.float64)
    factored = g0.ndim >= 2
    r = np.zeros(g0.shape[:-1] + (1,)) if factored else None
    c = np.zeros(g0.shape[:-2] + (1, g0.shape[-1])) if factored else None
    v = None if factored else np.zeros_like(g0)
    out = []
    for t, g in enumerate(gs, 1):
        w = t**beta2_decay
        if factored:
            r = (1 - w) * r + w * np.mean(g * g, axis=-1, keepdims=True)
            c = (1 - w) * c + w * np.mean(g * g, axis=-2, keepdims=True)
            vhat = r * c / np.maximum(np.mean(r, axis=-2, keepdims=True), eps1)
        else:
            v = (1 - w) * v + w * g * g
            vhat = v
        u = g / np.maximum(np.sqrt(vhat), eps1)
        if d is not None:
            u = u / max(1.0, np.sqrt(np.mean(u * u)) / d)
        out.append({"u": scale * u, "row_var": r, "col_var": c, "variance": v})
    return out


def ref_schedule_free(
    gs,
    lr,
    b1=0.9,
    b2=None,
    eps=1e-8,
    warmup_steps=0,
    r=0.0,
    weight_lr_power=2.0,
    per_lr=False,
):
    # Defazio et al. 2024 with x, y, z kept explicitly (schedulefree's *Reference
    # classes), from y_0 = x_0 = z_0 = 0 (without weight decay nothing depends on y_0):
    # lr_k = lr min(1, (k+1)/warmup); w = (k+1)^r max(lr_k)^power; c = w / sum w;
    # d = g (or g / (sqrt(v / (1 - b2^(k+1))) + eps)); z -= lr_k d; x = (1 - c) x + c z;
    # y = b1 x + (1 - b1) z. "u" = y_{k+1} - y_k (divided by -lr with per_lr: the
    # registry's "direction"), "x_minus_y" = x - y, "nu" = v.
    z = np.zeros_like(gs[0])
    x, y, v = z.copy(), z.copy(), z.copy()
    lr_max, weight_sum, out = 0.0, 0.0, []
    for k, g in enumerate(gs):
        lr_k = lr * ((k + 1) / warmup_steps if k < warmup_steps else 1.0)
        lr_max = max(lr_max, lr_k)
        weight = (k + 1) ** r * lr_max**weight_lr_power
        weight_sum += weight
        c = weight / weight_sum if weight_sum > 0 else 0.0
        d = g
        if b2 is not None:
            v = b2 * v + (1 - b2) * g * g
            d = g / (np.sqrt(v / (1 - b2 ** (k + 1))) + eps)
        z = z - lr_k * d
        x = (1 - c) * x + c * z
        y_new = b1 * x + (1 - b1) * z
        # x - y = (1 - b1)(x - z) by the definition of y (without x - y's cancellation)
        step = {"u": (y_new - y) / (-lr if per_lr else 1.0), "x_minus_y": (1 - b1) * (x - z)}
        if b2 is not None:
            step["nu"] = v
        out.append(step)
        y = y_new
    return out


def ref_belief(gs, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, rectify=False):
    # AdaBelief (Zhuang et al. 2020, Algorithm 2): m = b1 m + (1 - b1) g;
    # s = b2 s + (1 - b2)(g - m)^2 + eps (kept); u = m_hat / (sqrt(s_hat) + eps).
    # rectify: adabelief-pytorch's RAdam branch (rho_t >= 5), else u = m_hat.
    m, s, out = np.zeros_like(gs[0]), np.zeros_like(gs[0]), []
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        u = (m / bc1) / (np.sqrt(s / bc2) + eps)
        if rectify:
            rho_t = rho_inf - 2 * t * b2**t / bc2
            if rho_t >= 5:
                r = math.sqrt(
                    (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
                )
                u = r * math.sqrt(bc2) * (m / bc1) / (np.sqrt(s) + eps)
            else:
                u = m / bc1
        out.append({"u": u, "mu": m, "nu": s})
    return out


def ref_yogi(gs, b1=0.9, b2=0.999, eps=1e-3, v0=1e-6):
    # Yogi (Zaheer et al. 2018, Algorithm 2) with the bias correction and the v0 start of
    # m and v used by its implementations: v = v - (1 - b2) sign(v - g^2) g^2.
    m, v, out = np.full_like(gs[0], v0), np.full_like(gs[0], v0), []
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * np.sign(v - g * g) * g * g
        out.append({"u": (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), "mu": m, "nu": v})
    return out


def ref_adan(gs, b1=0.98, b2=0.92, b3=0.99, eps=1e-8):
    # Adan (Xie et al. 2022, Algorithm 1) with the code's decay rates b = 1 - beta_paper
    # and bias correction (authors' adan-pytorch); g_0 = g_1.
    z = np.zeros_like(gs[0])
    m, d, n, prev, out = z, z, z, gs[0], []
    for t, g in enumerate(gs, 1):
        diff = g - prev
        m = b1 * m + (1 - b1) * g
        d = b2 * d + (1 - b2) * diff
        n = b3 * n + (1 - b3) * (g + b2 * diff) ** 2
        u = (m / (1 - b1**t) + b2 * d / (1 - b2**t)) / (np.sqrt(n / (1 - b3**t)) + eps)
        out.append({"u": u, "mu": m, "delta": d, "nu": n, "prev_grad": g})
        prev = g
    return out


def ref_sm3(gs, momentum=None, beta=None, eps=1e-30):
    # SM3-II (Anil et al. 2019, Algorithm 2) with the cover {rows, columns, ...}: one
    # accumulator per index of each axis; nu(i) = min over the sets holding i + g(i)^2,
    # acc = max of nu over each set. beta (pytorch_optimizer): EMA nu and a running max.
    g0 = np.asarray(gs[0])
    shape = g0.shape
    if g0.ndim == 0:
        accs = [np.zeros(())]
    else:
        accs = [np.zeros([n if i == k else 1 for i, n in enumerate(shape)]) for k in range(g0.ndim)]
    buf, out = np.zeros(shape), []
    for g in gs:
        low = accs[0]
        for a in accs[1:]:
            low = np.minimum(low, a)
        nu = low + g * g if beta is None else beta * low + (1 - beta) * g * g
        nu = np.broadcast_to(nu, shape)
        new = []
        for k, a in enumerate(accs):
            axes = tuple(i for i in range(g0.ndim) if i != k)
            mx = nu.max(axis=axes, keepdims=True) if axes else nu.copy()
            new.append(mx if beta is None else np.maximum(a, mx))
        accs = new
        u = g / np.sqrt(nu + eps)
        step = {"accumulators": tuple(accs)}
        if momentum is not None:
            buf = momentum * buf + (1 - momentum) * u
            u = buf
            step["momentum_buffer"] = buf
        step["u"] = u
        out.append(step)
    return out


# --- large-batch layer-wise rules (trust ratio, LAMB, LARS, NovoGrad): a layer is a leaf.
# These take the leaf's parameter as ``params`` (test_primitives passes it by name).


def _trust(u, p, tc=1.0, eps=0.0, min_norm=0.0, max_param_norm=None, wd=0.0):
    # You et al. 2017 (LARS, wd inside the denominator) / 2020 (LAMB, phi = clip):
    # r = tc phi(||p||) / (||u|| + wd ||p|| + eps), r = 1 where ||p|| = 0 or the norms are 0.
    pn = max(float(np.linalg.norm(p)), min_norm)
    un = max(float(np.linalg.norm(u)), min_norm)
    if max_param_norm is not None:
        pn = min(pn, max_param_norm)
    den = un + wd * pn
    r = 1.0 if pn == 0 or den == 0 else tc * pn / (den + eps)
    return r * (u + wd * p)


def ref_trust_ratio(
    gs, params, trust_coefficient=1.0, eps=0.0, min_norm=0.0, max_param_norm=None, wd=0.0
):
    return [
        {"u": _trust(g, params, trust_coefficient, eps, min_norm, max_param_norm, wd)} for g in gs
    ]


def ref_lamb(gs, params, b1=0.9, b2=0.999, eps=1e-6, wd=0.0, bias_correction=True):
    # You et al. 2020, Algorithm 2: r = m_hat / (sqrt(v_hat) + eps) + wd p, then ||p|| / ||r||.
    adam = ref_adam(gs, b1, b2, eps, bias_correction=bias_correction)
    return [{"u": _trust(s["u"] + wd * params, params)} for s in adam]


def ref_lars(gs, params, mu=0.9, tc=1e-3, wd=0.0, nesterov=False):
    # You et al. 2017, Algorithm 1 with torch-form momentum (lr applied after the buffer):
    # d = tc ||p|| / (||g|| + wd ||p||) (g + wd p);  buf = mu buf + d;  u = buf (+ nesterov).
    buf, out = np.zeros_like(gs[0]), []
    for g in gs:
        d = _trust(g, params, tc, wd=wd)
        buf = mu * buf + d
        out.append({"u": d + mu * buf if nesterov else buf, "velocity": buf})
    return out


def ref_novograd(
    gs, b1=0.95, b2=0.98, eps=1e-8, eps_root=0.0, wd=0.0, grad_averaging=False, params=None
):
    # Ginsburg et al. 2019, Algorithm 1: v_1 = ||g_1||^2, v = b2 v + (1 - b2) ||g||^2;
    # d = g / (sqrt(v) + eps) + wd p;  m_1 = d, m = b1 m + d ((1 - b1) d with averaging).
    m = v = None
    out = []
    for g in gs:
        n2 = float(np.sum(np.abs(g) ** 2))
        v = n2 if v is None else b2 * v + (1 - b2) * n2
        d = g / (math.sqrt(v + eps_root) + eps)
        if wd:
            d = d + wd * params
        m = d if m is None else b1 * m + ((1 - b1) * d if grad_averaging else d)
        out.append({"u": m, "mu": m, "nu": np.asarray(v)})
    return out


def _ref_newton_schulz(g, coeffs=(3.4445, -4.775, 2.0315), steps=5, eps=1e-7):
    # torch.optim.Muon's iteration (Jordan et al. 2024) in float64: X = G / max(|G|_F, eps)
    # (transposed when tall); X <- a X + (b A + c A^2) X with A = X X^T.
    a, b, c = coeffs
    x = np.array(g, np.float64)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / max(np.sqrt(np.sum(x * x)), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def ref_muon(gs, momentum=0.95, nesterov=True, coeffs=(3.4445, -4.775, 2.0315), eps=1e-7,
             ns_steps=5, adjust=None):  # fmt: skip
    # torch.optim.Muon, one leaf (1-D leaves as a (1, n) row): B <- B + (1 - mu)(g - B);
    # M = g + mu (B - g) (nesterov) or B; u = r NS(M), r = sqrt(max(1, rows / cols))
    # ("original") or 0.2 sqrt(max(rows, cols)) ("match_rms_adamw").
    buf, out = np.zeros_like(gs[0]), []
    for g in gs:
        buf = buf + (1 - momentum) * (g - buf)
        m = g + momentum * (buf - g) if nesterov else buf
        rows, cols = m.shape if m.ndim == 2 else (1, m.size)
        r = 0.2 * math.sqrt(max(rows, cols)) if adjust == "match_rms_adamw" else (
            math.sqrt(max(1, rows / cols)))  # fmt: skip
        o = _ref_newton_schulz(m.reshape(rows, cols), coeffs, ns_steps, eps)
        out.append({"u": r * o.reshape(g.shape), "mu": buf.copy()})
    return out


def ref_rprop(gs, eta_minus=0.5, eta_plus=1.2, lo=1e-4, hi=5e3):
    # torch.optim.Rprop (Riedmiller & Braun 1993 without backtracking), step sizes in units
    # of the learning rate (start 1): s <- clip(s * eta(sign(g prev)), lo, hi); g = 0 where
    # the sign flipped; u = sign(g) s; prev = g.
    prev, s, out = np.zeros_like(gs[0]), np.ones_like(gs[0]), []
    for g in gs:
        r = np.sign(g * prev)
        s = np.clip(s * np.where(r > 0, eta_plus, np.where(r < 0, eta_minus, 1.0)), lo, hi)
        g = np.where(r < 0, 0.0, g)
        out.append({"u": np.sign(g) * s, "prev": g, "step_size": s.copy()})
        prev = g
    return out


def ref_asgd(gs, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, wd=0.0, direction=False):
    # torch.optim.ASGD at fixed params p: eta = lr / (1 + lambd lr (t-1))^alpha,
    # mu = 1 / max(1, t - 1 - t0); p' = p (1 - lambd eta) - eta (g + wd p); u = p' - p;
    # ax = p' if mu == 1 else ax + mu (p' - ax). ``direction``: u / -lr (for a chain read
    # as -lr times a direction).
    ax, out = np.zeros_like(params), []
    for t, g in enumerate(gs, 1):
        eta = lr / (1 + lambd * lr * (t - 1)) ** alpha
        mu = 1 / max(1, t - 1 - t0)
        new = params * (1 - lambd * eta) - eta * (g + wd * params)
        ax = new if mu == 1 else ax + mu * (new - ax)
        u = new - params
        out.append({"u": -u / lr if direction else u, "ax": ax.copy()})
    return out


# --- Parameter-free step sizes (Prodigy, D-Adaptation Adam, DoG): global rules. They take
# whole trees (``grad_trees``: one dict of leaves per step; ``params``: a dict), sum over
# every leaf, and return per step {"u": tree, slot: tree}. ``evolve``: params advance by
# each step's u (p <- p + u), else they stay fixed.


def _pf_dot(a, b):
    return float(np.sum(np.real(np.conj(a) * b)))


def ref_prodigy(
    grad_trees, params, evolve=True, lr=1.0, b1=0.9, b2=0.999, beta3=None, eps=1e-8,
    wd=0.0, bias_correction=False, safeguard=False, d0=1e-6, d_coef=1.0, growth=math.inf,
):  # fmt: skip
    # Mishchenko & Defazio (2023), prodigyopt 1.1.2: dlr = d lr c; r = beta3 r +
    # (d / d0) dlr <g, x0 - x>; s = beta3 s + (d / d0) dlr g (d for dlr with safeguard);
    # m = b1 m + d (1 - b1) g; v = b2 v + d^2 (1 - b2) g^2; d_hat = d_coef r / ||s||_1;
    # d = max(d, d_hat) while d == d0; d_max = max(d_max, d_hat); d = min(d_max, growth d);
    # direction = d_old c (m / (sqrt(v) + d eps) + wd x)  (the step is -lr times it;
    # m -> d_new g when b1 = 0).
    beta3 = math.sqrt(b2) if beta3 is None else beta3
    keys = sorted(params)
    x = {k: np.array(params[k], dtype=float) for k in keys}
    x0 = {k: v.copy() for k, v in x.items()}
    m, v, s = ({k: np.zeros_like(x[k]) for k in keys} for _ in range(3))
    d, d_max, r, out = d0, d0, 0.0, []
    for k_step, g in enumerate(grad_trees):
        c = math.sqrt(1 - b2 ** (k_step + 1)) / (1 - b1 ** (k_step + 1)) if bias_correction else 1
        dlr = d * lr * c
        r = beta3 * r + sum((d / d0) * dlr * _pf_dot(g[k], x0[k] - x[k]) for k in keys)
        for k in keys:
            m[k] = b1 * m[k] + d * (1 - b1) * g[k]
            v[k] = b2 * v[k] + d * d * (1 - b2) * np.abs(g[k]) ** 2
            s[k] = beta3 * s[k] + (d / d0) * (d if safeguard else dlr) * g[k]
        d_hat = d_coef * r / sum(float(np.sum(np.abs(s[k]))) for k in keys)
        d_new = max(d, d_hat) if d == d0 else d
        d_max = max(d_max, d_hat)
        d_new = min(d_max, d_new * growth)
        # b1 = 0: prodigyopt keeps no m and steps along d g with the new d.
        mk = {k: d_new * g[k] if b1 == 0 else m[k] for k in keys}
        u = {k: d * c * (mk[k] / (np.sqrt(v[k]) + d_new * eps) + wd * x[k]) for k in keys}
        d = d_new
        step = {"u": u, "mu": dict(m), "nu": dict(v), "s": dict(s), "p0": dict(x0), "d": d}
        out.append({key: ({k: np.copy(a[k]) for k in keys} if key != "d" else a)
                    for key, a in step.items()})  # fmt: skip
        if evolve:
            x = {k: x[k] + u[k] for k in keys}
    return out


def ref_dadapt_adam(
    grad_trees, params, evolve=True, lr=1.0, b1=0.9, b2=0.999, eps=1e-8, wd=0.0,
    bias_correction=False, d0=1e-6, growth=math.inf,
):  # fmt: skip
    # Defazio & Mishchenko (2023), dadaptation 3.2 DAdaptAdam: dlr = d lr c, b = sqrt(b2);
    # r = b r + (1 - b) dlr <g, s / (sqrt(v) + eps)> (old s, v); m = b1 m + dlr (1 - b1) g;
    # v = b2 v + (1 - b2) g^2; s = b s + dlr (1 - b) g; d_hat = r / ((1 - b) ||s||_1);
    # d = max(d, min(d_hat, growth d)); step = m / (sqrt(v) + eps) + wd dlr x; direction
    # = step / lr (the step is -lr times it).
    sb2 = math.sqrt(b2)
    keys = sorted(params)
    x = {k: np.array(params[k], dtype=float) for k in keys}
    m, v, s = ({k: np.zeros_like(x[k]) for k in keys} for _ in range(3))
    d, r, out = d0, 0.0, []
    for k_step, g in enumerate(grad_trees):
        c = math.sqrt(1 - b2 ** (k_step + 1)) / (1 - b1 ** (k_step + 1)) if bias_correction else 1
        dlr = d * lr * c
        acc = sum(dlr * _pf_dot(g[k], s[k] / (np.sqrt(v[k]) + eps)) for k in keys)
        for k in keys:
            m[k] = b1 * m[k] + dlr * (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * np.abs(g[k]) ** 2
            s[k] = sb2 * s[k] + dlr * (1 - sb2) * g[k]
        r = sb2 * r + (1 - sb2) * acc
        d_hat = r / ((1 - sb2) * sum(float(np.sum(np.abs(s[k]))) for k in keys))
        u = {k: (m[k] / (np.sqrt(v[k]) + eps) + wd * dlr * x[k]) / lr for k in keys}
        d = max(d, min(d_hat, d * growth))
        step = {"u": u, "mu": dict(m), "nu": dict(v), "s": dict(s), "d": d}
        out.append({key: ({k: np.copy(a[k]) for k in keys} if key != "d" else a)
                    for key, a in step.items()})  # fmt: skip
        if evolve:
            x = {k: x[k] + u[k] for k in keys}
    return out


def ref_dog(grad_trees, params, evolve=True, reps_rel=1e-6, eps=1e-8, init_eta=None, layer=False):
    # Ivgi, Hinder & Carmon (2023), dog-optimizer 1.0.3 DoG (LDoG with layer=True: each
    # leaf on its own): rbar_1 = reps_rel (1 + ||x0||) (0 with init_eta), rbar_t =
    # max(rbar, ||x_t - x0||); G = eps + sum_i ||g_i||^2; u = rbar / sqrt(G) g
    # (init_eta g on the first step).
    keys = sorted(params)
    x = {k: np.array(params[k], dtype=float) for k in keys}
    x0 = {k: v.copy() for k, v in x.items()}
    groups = [[k] for k in keys] if layer else [keys]
    rbar, gsum, out = {}, {}, []
    for t, g in enumerate(grad_trees):
        eta = {}
        for grp in groups:
            name = tuple(grp)
            g2 = sum(float(np.sum(np.abs(g[k]) ** 2)) for k in grp)
            if t == 0:
                norm = math.sqrt(sum(float(np.sum(np.abs(x[k]) ** 2)) for k in grp))
                rbar[name] = (0.0 if init_eta is not None else reps_rel) * (1 + norm)
                gsum[name] = g2 + eps
            else:
                dist = math.sqrt(sum(float(np.sum(np.abs(x[k] - x0[k]) ** 2)) for k in grp))
                rbar[name] = max(rbar[name], dist)
                gsum[name] += g2
            e = rbar[name] / math.sqrt(gsum[name])
            for k in grp:
                eta[k] = init_eta if (t == 0 and init_eta is not None) else e
        u = {k: eta[k] * g[k] for k in keys}
        out.append({"u": u, "x0": {k: x0[k].copy() for k in keys}})
        if evolve:
            x = {k: x[k] + u[k] for k in keys}
    return out
