"""Record reference parameter trajectories from ``torch.optim`` (float64).

Run from the repository root, in an environment that has ``torch==2.13.0`` and
``numpy`` installed (torch is NOT a dependency of gradxform; use a separate
virtual environment)::

    python tests/reference/record_torch.py

It writes ONE file, ``tests/reference/torch_trajectories.json`` (next to this
script), which ``tests/test_reference_parity.py`` reads without importing torch.

The problem and the recording loop are ``_problem.py``'s (the same for every reference
source). For every case the torch optimizer (single-tensor implementation,
``foreach=False``) runs ``NUM_STEPS`` steps; the params after each step in
``RECORD_STEPS`` are stored, with explicit kwargs for both torch and gradxform.
"""

import torch
from _problem import NUM_STEPS, RECORD_STEPS, closed_form_grads, loss, make_problem, write


def _case(name, torch_opt, gx_opt, **torch_kwargs):
    return {
        "name": name,
        "torch_optimizer": torch_opt,
        "gx_optimizer": gx_opt,
        "torch_kwargs": torch_kwargs,
    }


B = [0.9, 0.999]
# Every hyperparameter is given explicitly (so neither library's defaults matter).
CASES = [
    # --- SGD
    _case(
        "sgd_plain",
        "SGD",
        "sgd",
        lr=0.05,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
    ),
    _case(
        "sgd_momentum",
        "SGD",
        "sgd",
        lr=0.05,
        momentum=0.9,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
    ),
    _case(
        "sgd_momentum_dampening",
        "SGD",
        "sgd",
        lr=0.05,
        momentum=0.9,
        dampening=0.3,
        nesterov=False,
        weight_decay=0.0,
    ),
    _case(
        "sgd_nesterov",
        "SGD",
        "sgd",
        lr=0.05,
        momentum=0.9,
        dampening=0.0,
        nesterov=True,
        weight_decay=0.0,
    ),
    _case(
        "sgd_momentum_wd",
        "SGD",
        "sgd",
        lr=0.05,
        momentum=0.9,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.01,
    ),
    # --- Adagrad
    _case(
        "adagrad_plain",
        "Adagrad",
        "adagrad",
        lr=0.1,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
    ),
    _case(
        "adagrad_decay_wd_init",
        "Adagrad",
        "adagrad",
        lr=0.1,
        lr_decay=0.01,
        weight_decay=0.01,
        initial_accumulator_value=0.1,
        eps=1e-10,
    ),
    # --- Adadelta
    _case("adadelta_default", "Adadelta", "adadelta", lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
    _case(
        "adadelta_rho_eps_wd", "Adadelta", "adadelta", lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.01
    ),
    # --- RMSprop (torch alpha == gradxform decay)
    _case(
        "rmsprop_plain",
        "RMSprop",
        "rmsprop",
        lr=0.01,
        alpha=0.99,
        eps=1e-8,
        momentum=0.0,
        centered=False,
        weight_decay=0.0,
    ),
    _case(
        "rmsprop_centered",
        "RMSprop",
        "rmsprop",
        lr=0.01,
        alpha=0.99,
        eps=1e-8,
        momentum=0.0,
        centered=True,
        weight_decay=0.0,
    ),
    _case(
        "rmsprop_momentum",
        "RMSprop",
        "rmsprop",
        lr=0.01,
        alpha=0.99,
        eps=1e-8,
        momentum=0.9,
        centered=False,
        weight_decay=0.0,
    ),
    _case(
        "rmsprop_centered_momentum_wd",
        "RMSprop",
        "rmsprop",
        lr=0.01,
        alpha=0.9,
        eps=1e-8,
        momentum=0.5,
        centered=True,
        weight_decay=0.01,
    ),
    # --- Adam (coupled L2 weight decay)
    _case(
        "adam_plain", "Adam", "adam", lr=0.05, betas=B, eps=1e-8, amsgrad=False, weight_decay=0.0
    ),
    _case(
        "adam_amsgrad", "Adam", "adam", lr=0.05, betas=B, eps=1e-8, amsgrad=True, weight_decay=0.0
    ),
    _case("adam_wd", "Adam", "adam", lr=0.05, betas=B, eps=1e-8, amsgrad=False, weight_decay=0.01),
    _case(
        "adam_betas_eps",
        "Adam",
        "adam",
        lr=0.05,
        betas=[0.8, 0.99],
        eps=1e-6,
        amsgrad=False,
        weight_decay=0.0,
    ),
    # --- AdamW (decoupled weight decay)
    _case(
        "adamw_wd", "AdamW", "adamw", lr=0.05, betas=B, eps=1e-8, amsgrad=False, weight_decay=0.1
    ),
    _case(
        "adamw_amsgrad_wd",
        "AdamW",
        "adamw",
        lr=0.05,
        betas=B,
        eps=1e-8,
        amsgrad=True,
        weight_decay=0.05,
    ),
    # --- RAdam (coupled weight decay; rho_t > 5 first at step 6 for b2 = 0.999)
    _case("radam_plain", "RAdam", "radam", lr=0.05, betas=B, eps=1e-8, weight_decay=0.0),
    _case("radam_wd", "RAdam", "radam", lr=0.05, betas=B, eps=1e-8, weight_decay=0.01),
    # --- NAdam (coupled weight decay)
    _case(
        "nadam_plain",
        "NAdam",
        "nadam",
        lr=0.05,
        betas=B,
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
    ),
    _case(
        "nadam_wd",
        "NAdam",
        "nadam",
        lr=0.05,
        betas=B,
        eps=1e-8,
        weight_decay=0.01,
        momentum_decay=4e-3,
    ),
    # --- Adamax
    _case("adamax_plain", "Adamax", "adamax", lr=0.05, betas=B, eps=1e-8, weight_decay=0.0),
    _case("adamax_wd", "Adamax", "adamax", lr=0.05, betas=B, eps=1e-8, weight_decay=0.01),
]

# torch-only kwargs that select the implementation / variant; not passed to gradxform.
TORCH_EXTRA = {"foreach": False, "maximize": False}
TORCH_EXTRA_BY_OPT = {
    "RAdam": {"decoupled_weight_decay": False},
    "NAdam": {"decoupled_weight_decay": False},
}


def gradxform_kwargs(torch_kwargs):
    """Translate torch hyperparameter names to gradxform names."""
    out = {}
    for k, v in torch_kwargs.items():
        if k == "lr":
            out["learning_rate"] = v
        elif k == "betas":
            out["b1"], out["b2"] = v
        elif k == "alpha":
            out["decay"] = v
        else:
            out[k] = v
    return out


def run_case(case, a_np, c_np, x0_leaves):
    a = torch.tensor(a_np)
    c = torch.tensor(c_np)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in x0_leaves.items()}
    kwargs = dict(case["torch_kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    kwargs.update(TORCH_EXTRA)
    kwargs.update(TORCH_EXTRA_BY_OPT.get(case["torch_optimizer"], {}))
    opt = getattr(torch.optim, case["torch_optimizer"])([params["w"], params["b"]], **kwargs)
    traj = {}
    for step in range(1, NUM_STEPS + 1):
        with torch.no_grad():
            grads = closed_form_grads(a, c, params)
        if step == 1:  # sanity check: closed form == autograd
            for p in params.values():
                p.grad = None
            loss(a, c, params).backward()
            for k, p in params.items():
                torch.testing.assert_close(p.grad, grads[k], rtol=1e-13, atol=1e-13)
        for k, p in params.items():
            p.grad = grads[k].clone()
        opt.step()
        if step in RECORD_STEPS:
            traj[str(step)] = {k: p.detach().numpy().tolist() for k, p in params.items()}
        for p in params.values():
            assert p.dtype == torch.float64
            assert torch.all(torch.isfinite(p)), (case["name"], step)
    torch_kwargs_full = dict(case["torch_kwargs"])
    torch_kwargs_full.update(TORCH_EXTRA)
    torch_kwargs_full.update(TORCH_EXTRA_BY_OPT.get(case["torch_optimizer"], {}))
    return {
        "name": case["name"],
        "torch": {"optimizer": case["torch_optimizer"], "kwargs": torch_kwargs_full},
        "gradxform": {
            "optimizer": case["gx_optimizer"],
            "kwargs": gradxform_kwargs(case["torch_kwargs"]),
        },
        "trajectory": traj,
    }


def main():
    torch.set_default_dtype(torch.float64)
    a, c, x0 = make_problem()
    cases = [run_case(case, a, c, x0) for case in CASES]
    write("torch", "torch.optim reference trajectories (float64); see record_torch.py", {}, cases)


if __name__ == "__main__":
    main()
