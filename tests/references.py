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
