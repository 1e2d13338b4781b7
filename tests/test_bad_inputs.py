# ruff: noqa: E501  (a table of full error-message regexes: one per line reads best)
"""Bad inputs, one row each: what triggers the error, its type, and its message.

Each row is (category, id, trigger, exception type, regex for ``pytest.raises(match=)``).
The regexes pin what a user needs to fix the call: the owner (transform or function),
the argument or tree path, and what was expected against what was received. The
categories are listed in README's "Bad inputs" paragraph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

P = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def _update(tx, grads, params=P, *, pass_params=True, state=None):
    state = tx.init(params) if state is None else state
    return tx.update(grads, state, params if pass_params else None)


def _quadratic(p):
    return jnp.sum(jnp.abs(p) ** 2)


class Row(NamedTuple):
    category: str
    id: str
    trigger: Callable[[], object]
    exc: type[BaseException]
    match: str


_NON_FLOAT = r"only floating or complex arrays can be optimized"
_F32_MAX = r"must be at most 3\.4028235e\+38 in magnitude, float32's largest number"

ROWS = [
    # ---- integer (non-float) params and updates
    Row(
        "integer params",
        "int32-param-init",
        lambda: gx.adam(1e-3).init({"w": jnp.ones(3, jnp.int32)}),
        TypeError,
        r"params leaf at \['w'\] has dtype int32; " + _NON_FLOAT,
    ),
    Row(
        "integer params",
        "numpy-int64-param",
        lambda: gx.sgd(1e-3).init({"w": np.ones(3, np.int64)}),
        TypeError,
        r"params leaf at \['w'\] has dtype int64; " + _NON_FLOAT,
    ),
    Row(
        "integer params",
        "bool-param",
        lambda: gx.sgd(1e-3).init({"w": jnp.ones(3, bool)}),
        TypeError,
        r"params leaf at \['w'\] has dtype bool; " + _NON_FLOAT,
    ),
    Row(
        "integer params",
        "int32-update",
        lambda: _update(gx.adam(1e-3), {"w": jnp.ones((2, 3), jnp.int32), "b": jnp.zeros(3)}),
        TypeError,
        r"updates leaf at \['w'\] has dtype int32: updates must be floating or complex",
    ),
    Row(
        "integer params",
        "apply-to-int-param",
        lambda: gx.apply_updates({"n": jnp.ones(2, jnp.int32)}, {"n": jnp.ones(2)}),
        TypeError,
        r"apply_updates: at \['n'\], the int32 parameter cannot take a float32 update",
    ),
    Row(
        "integer params",
        "apply-bool-update",
        lambda: gx.apply_updates({"n": jnp.ones(2)}, {"n": jnp.ones(2, bool)}),
        TypeError,
        r"apply_updates: at \['n'\], the update has dtype bool; updates must be floating",
    ),
    Row(
        "integer params",
        "apply-complex-to-real",
        lambda: gx.apply_updates({"n": jnp.ones(2)}, {"n": jnp.ones(2, jnp.complex64)}),
        TypeError,
        r"apply_updates: at \['n'\], a complex update for a real parameter would lose",
    ),
    Row(
        "integer params",
        "minimize-int-params",
        lambda: gx.minimize(lambda p: jnp.sum(p * p), jnp.ones(2, jnp.int32), gx.lbfgs()),
        TypeError,
        r"params leaf at <root> has dtype int32; " + _NON_FLOAT,
    ),
    # ---- mismatched trees
    Row(
        "mismatched trees",
        "update-missing-key",
        lambda: _update(gx.adam(1e-3), {"w": P["w"]}),
        ValueError,
        r"tree structures differ \(params vs updates\)\.\s+first path in params but not in updates: \['b'\]",
    ),
    Row(
        "mismatched trees",
        "update-extra-key",
        lambda: _update(gx.adam(1e-3), {**P, "c": jnp.ones(1)}),
        ValueError,
        r"tree structures differ \(params vs updates\)\.\s+first path in updates but not in params: \['c'\]",
    ),
    Row(
        "mismatched trees",
        "params-missing-key",
        lambda: gx.adam(1e-3).update(P, gx.adam(1e-3).init(P), {"w": P["w"]}),
        ValueError,
        r"first path in updates but not in params: \['b'\] \(1 such path\(s\)\)",
    ),
    Row(
        "mismatched trees",
        "state-for-other-params",
        lambda: gx.adam(1e-3).update(P, gx.adam(1e-3).init({"x": jnp.ones(3)}), P),
        ValueError,
        r"tree structures differ \(updates vs state slot 0\)\.\s+first path in updates but not in state slot 0: \['b'\]",
    ),
    # ---- list vs tuple
    Row(
        "list vs tuple",
        "updates-tuple-state-list",
        lambda: gx.adam(1e-3).update((jnp.ones(2),), gx.adam(1e-3).init([jnp.ones(2)])),
        ValueError,
        r"\(updates vs state slot 0\)\.\s+same leaf paths but different node types\s+updates: PyTreeDef\(\(\*,\)\)\s+state slot 0: PyTreeDef\(\[\*\]\)",
    ),
    Row(
        "list vs tuple",
        "params-tuple-updates-list",
        lambda: gx.adam(1e-3).update(
            [jnp.ones(2)], gx.adam(1e-3).init([jnp.ones(2)]), (jnp.ones(2),)
        ),
        ValueError,
        r"\(params vs updates\)\.\s+same leaf paths but different node types\s+params: PyTreeDef\(\(\*,\)\)\s+updates: PyTreeDef\(\[\*\]\)",
    ),
    # ---- state from another transform
    Row(
        "state from another transform",
        "adam-given-sgd-state",
        lambda: gx.adam(1e-3).update(P, gx.sgd(1e-3).init(P), P),
        ValueError,
        r"chain\.update: state does not belong to this chain: expected a ChainState with names \('scale_by_adam', 'scale_by_learning_rate'\), got \('scale_by_learning_rate',\)",
    ),
    Row(
        "state from another transform",
        "adam-given-rmsprop-state",
        lambda: gx.adam(1e-3).update(P, gx.rmsprop(1e-3).init(P), P),
        ValueError,
        r"expected a ChainState with names \('scale_by_adam', 'scale_by_learning_rate'\), got \('scale_by_rms', 'scale_by_learning_rate'\)\. Did you init a different transform\?",
    ),
    # ---- wrong shapes
    Row(
        "wrong shapes",
        "update-rank",
        lambda: _update(gx.adam(1e-3), {"w": jnp.ones(3), "b": jnp.zeros(3)}),
        ValueError,
        r"updates leaf at \['w'\] has shape \(3,\), its parameter \(2, 3\)",
    ),
    Row(
        "wrong shapes",
        "update-broadcastable-no-params",
        lambda: _update(
            gx.adam(1e-3), {"w": jnp.ones((1, 3)), "b": jnp.zeros(3)}, pass_params=False
        ),
        ValueError,
        r"updates leaf at \['w'\] has shape \(1, 3\), its parameter \(2, 3\)",
    ),
    Row(
        "wrong shapes",
        "stateless-sgd",
        lambda: _update(gx.sgd(1e-3), {"w": jnp.ones((1, 3)), "b": jnp.zeros(3)}),
        ValueError,
        r"updates leaf at \['w'\] has shape \(1, 3\), its parameter \(2, 3\)",
    ),
    Row(
        "wrong shapes",
        "apply-updates",
        lambda: gx.apply_updates(P, {"w": jnp.ones((1, 3)), "b": jnp.zeros(3)}),
        ValueError,
        r"updates leaf at \['w'\] has shape \(1, 3\), its parameter \(2, 3\)",
    ),
    # ---- missing params where needed
    Row(
        "missing params",
        "add_decayed_weights",
        lambda: _update(gx.add_decayed_weights(0.1), P, pass_params=False),
        ValueError,
        r"add_decayed_weights needs the current parameters: call tx\.update\(grads, state, params\)",
    ),
    Row(
        "missing params",
        "adamw",
        lambda: _update(gx.adamw(1e-3), P, pass_params=False),
        ValueError,
        r"add_decayed_weights needs the current parameters",
    ),
    Row(
        "missing params",
        "project",
        lambda: _update(gx.project(lambda p: p), P, pass_params=False),
        ValueError,
        r"project needs the current parameters: call tx\.update\(grads, state, params\)",
    ),
    Row(
        "missing params",
        "lookahead",
        lambda: _update(gx.lookahead(gx.sgd(1e-3)), P, pass_params=False),
        ValueError,
        r"lookahead needs the current parameters: call tx\.update\(grads, state, params\)",
    ),
    Row(
        "missing params",
        "keep_params_nonnegative",
        lambda: _update(gx.keep_params_nonnegative(), P, pass_params=False),
        ValueError,
        r"keep_params_nonnegative needs the current parameters",
    ),
    # ---- NaN / Inf / negative / out-of-range hyperparameters
    Row(
        "bad hyperparameter values",
        "nan-learning-rate",
        lambda: gx.adam(math.nan),
        ValueError,
        r"scale_by_learning_rate: learning_rate must be a finite number in \[0, inf\], got nan",
    ),
    Row(
        "bad hyperparameter values",
        "inf-learning-rate",
        lambda: gx.sgd(math.inf),
        ValueError,
        r"scale_by_learning_rate: learning_rate must be a finite number in \[0, inf\], got inf",
    ),
    Row(
        "bad hyperparameter values",
        "negative-learning-rate",
        lambda: gx.sgd(-1.0),
        ValueError,
        r"learning_rate must be a finite number in \[0, inf\], got -1\.0",
    ),
    Row(
        "bad hyperparameter values",
        "negative-eps",
        lambda: gx.adam(1e-3, eps=-1e-8),
        ValueError,
        r"scale_by_adam: eps must be a finite number in \(0, inf\], got -1e-08",
    ),
    Row(
        "bad hyperparameter values",
        "b1-equal-1",
        lambda: gx.adam(1e-3, b1=1.0),
        ValueError,
        r"scale_by_adam: b1 must be a finite number in \[0, 1\), got 1\.0",
    ),
    Row(
        "bad hyperparameter values",
        "nan-b2",
        lambda: gx.adam(1e-3, b2=math.nan),
        ValueError,
        r"scale_by_adam: b2 must be a finite number in \[0, 1\), got nan",
    ),
    Row(
        "bad hyperparameter values",
        "negative-weight-decay",
        lambda: gx.adamw(1e-3, weight_decay=-0.1),
        ValueError,
        r"add_decayed_weights: weight_decay must be a finite number in \[0, inf\], got -0\.1",
    ),
    Row(
        "bad hyperparameter values",
        "negative-momentum",
        lambda: gx.sgd(1e-3, momentum=-0.5),
        ValueError,
        r"scale_by_momentum: momentum must be a finite number in \[0, 1\), got -0\.5",
    ),
    Row(
        "bad hyperparameter values",
        "rho-above-1",
        lambda: gx.adadelta(rho=1.5),
        ValueError,
        r"scale_by_adadelta: rho must be a finite number in \[0, 1\], got 1\.5",
    ),
    Row(
        "bad hyperparameter values",
        "negative-max-norm",
        lambda: gx.clip_by_global_norm(-1.0),
        ValueError,
        r"clip_by_global_norm: max_norm must be a finite number in \(0, inf\], got -1\.0",
    ),
    Row(
        "bad hyperparameter values",
        "nan-max-delta",
        lambda: gx.clip(math.nan),
        ValueError,
        r"clip: max_delta must be a finite number in \[0, inf\], got nan",
    ),
    Row(
        "bad hyperparameter values",
        "nesterov-with-dampening",
        lambda: gx.sgd(1e-3, 0.9, nesterov=True, dampening=0.5),
        ValueError,
        r"scale_by_momentum: nesterov=True requires dampening=0, got 0\.5",
    ),
    Row(
        "bad hyperparameter values",
        "nesterov-without-momentum",
        lambda: gx.sgd(1e-3, None, nesterov=True),
        ValueError,
        r"sgd: nesterov=True requires momentum > 0",
    ),
    Row(
        "bad hyperparameter values",
        "negative-tol",
        lambda: gx.minimize(_quadratic, jnp.ones(2), gx.lbfgs(), tol=-1.0),
        ValueError,
        r"minimize: tol must be a finite number in \[0, inf\], got -1\.0",
    ),
    Row(
        "bad hyperparameter values",
        "zero-decay-steps",
        lambda: gx.cosine_decay_schedule(1e-3, 0),
        ValueError,
        r"cosine_decay_schedule: decay_steps must be a finite number in \(0, inf\], got 0",
    ),
    # ---- hyperparameters that underflow or overflow in float32
    Row(
        "float32 underflow/overflow",
        "eps-underflows",
        lambda: gx.adam(1e-3, eps=1e-50),
        ValueError,
        r"scale_by_adam: eps must be at least 1\.1754944e-38, float32's smallest normal number .* got 1e-50",
    ),
    Row(
        "float32 underflow/overflow",
        "max-norm-underflows",
        lambda: gx.clip_by_global_norm(1e-45),
        ValueError,
        r"clip_by_global_norm: max_norm must be at least 1\.1754944e-38",
    ),
    Row(
        "float32 underflow/overflow",
        "learning-rate-overflows",
        lambda: gx.sgd(1e50),
        ValueError,
        r"scale_by_learning_rate: learning_rate " + _F32_MAX + r" .* got 1e\+50",
    ),
    Row(
        "float32 underflow/overflow",
        "eps-overflows",
        lambda: gx.adam(1e-3, eps=1e39),
        ValueError,
        r"scale_by_adam: eps " + _F32_MAX,
    ),
    # ---- wrong types for hyperparameters and integer options
    Row(
        "wrong option types",
        "string-learning-rate",
        lambda: gx.sgd("0.1"),
        TypeError,
        r"scale_by_learning_rate: learning_rate must be a number or a schedule, got '0\.1'",
    ),
    Row(
        "wrong option types",
        "complex-learning-rate",
        lambda: gx.sgd(1e-3 + 1j),
        TypeError,
        r"learning_rate must be a number or a schedule, got \(0\.001\+1j\)",
    ),
    Row(
        "wrong option types",
        "bool-learning-rate",
        lambda: gx.sgd(True),
        TypeError,
        r"learning_rate must be a number or a schedule, got True",
    ),
    Row(
        "wrong option types",
        "array-learning-rate",
        lambda: gx.sgd(jnp.ones(2)),
        TypeError,
        r"learning_rate must be a number or a schedule, got Array\(\[1\., 1\.\]",
    ),
    Row(
        "wrong option types",
        "array-max-norm",
        lambda: gx.clip_by_global_norm(jnp.ones(2)),
        TypeError,
        r"clip_by_global_norm: max_norm must be a real number, got Array",
    ),
    Row(
        "wrong option types",
        "momentum-none-for-heavy-ball",
        lambda: gx.heavy_ball(1e-3, None),
        TypeError,
        r"scale_by_momentum: momentum must be a number or a schedule, got None",
    ),
    Row(
        "wrong option types",
        "memory-size-float",
        lambda: gx.lbfgs(memory_size=2.5),
        ValueError,
        r"scale_by_lbfgs: memory_size must be an integer >= 1, got 2\.5",
    ),
    Row(
        "wrong option types",
        "memory-size-bool",
        lambda: gx.lbfgs(memory_size=True),
        TypeError,
        r"scale_by_lbfgs: memory_size must be a real number, got True",
    ),
    Row(
        "wrong option types",
        "memory-size-zero",
        lambda: gx.lbfgs(memory_size=0),
        ValueError,
        r"scale_by_lbfgs: memory_size must be a finite number in \[1, 2147483647\], got 0",
    ),
    Row(
        "wrong option types",
        "every-k-string",
        lambda: gx.accumulate(gx.sgd(1e-3), every_k="2"),
        TypeError,
        r"accumulate: every_k must be a real number, got '2'",
    ),
    Row(
        "wrong option types",
        "every-k-zero",
        lambda: gx.accumulate(gx.sgd(1e-3), every_k=0),
        ValueError,
        r"accumulate: every_k must be a finite number in \[1, 2147483647\], got 0",
    ),
    Row(
        "wrong option types",
        "sync-period-float",
        lambda: gx.lookahead(gx.sgd(1e-3), sync_period=1.5),
        ValueError,
        r"lookahead: sync_period must be an integer >= 1, got 1\.5",
    ),
    Row(
        "wrong option types",
        "max-steps-float",
        lambda: gx.minimize(_quadratic, jnp.ones(2), gx.lbfgs(), max_steps=2.5),
        ValueError,
        r"minimize: max_steps must be an integer >= 0, got 2\.5",
    ),
    Row(
        "wrong option types",
        "max-consecutive-errors-negative",
        lambda: gx.apply_if_finite(gx.sgd(1e-3), -1),
        ValueError,
        r"apply_if_finite: max_consecutive_errors must be a finite number in \[0, 2147483647\], got -1",
    ),
    Row(
        "wrong option types",
        "on-limit-unknown",
        lambda: gx.apply_if_finite(gx.sgd(1e-3), 2, on_limit="explode"),
        ValueError,
        r"apply_if_finite: on_limit must be 'apply' or 'raise', got 'explode'",
    ),
    Row(
        "wrong option types",
        "otherwise-unknown",
        lambda: gx.conditionally_transform(gx.sgd(1e-3), lambda c: c > 0, otherwise="skip"),
        ValueError,
        r"conditionally_transform: otherwise must be 'identity' or 'zero', got 'skip'",
    ),
    Row(
        "wrong option types",
        "positional-optax-port",
        lambda: gx.adagrad(1e-2, 0.1),
        TypeError,
        r"adagrad\(\) takes from 0 to 1 positional arguments but 2 were given",
    ),
    # ---- bad dtype options
    Row(
        "bad dtype options",
        "mu-dtype-int",
        lambda: gx.adam(1e-3, mu_dtype=jnp.int32),
        TypeError,
        r"scale_by_adam: mu_dtype must be None or a real floating dtype \(jnp\.float32, jnp\.bfloat16, \.\.\.\), got <class 'jax\.numpy\.int32'>",
    ),
    Row(
        "bad dtype options",
        "mu-dtype-unknown-name",
        lambda: gx.adam(1e-3, mu_dtype="float33"),
        TypeError,
        r"scale_by_adam: mu_dtype must be None or a real floating dtype .* got 'float33'",
    ),
    Row(
        "bad dtype options",
        "accumulator-dtype-int8",
        lambda: gx.accumulate(gx.sgd(1e-3), 2, accumulator_dtype=jnp.int8),
        TypeError,
        r"accumulate: accumulator_dtype must be None or a real floating dtype .* got <class 'jax\.numpy\.int8'>",
    ),
    Row(
        "bad dtype options",
        "slow-dtype-bool",
        lambda: gx.lookahead(gx.sgd(1e-3), slow_dtype=bool),
        TypeError,
        r"lookahead: slow_dtype must be None or a real floating dtype .* got <class 'bool'>",
    ),
    # ---- masks and labels of the wrong structure, bad selectors
    Row(
        "bad masks and selectors",
        "mask-missing-leaf",
        lambda: _update(gx.masked(gx.sgd(1e-3), {"w": True}), P),
        ValueError,
        r"masked: the mask tree is not a prefix of the params tree; first differing path: b \(in params but not in the mask\)",
    ),
    Row(
        "bad masks and selectors",
        "mask-list-for-dict",
        lambda: _update(gx.masked(gx.sgd(1e-3), [True, False]), P),
        ValueError,
        r"masked: the mask tree is not a prefix of the params tree; first differing path: 0 \(in the mask but not in params\)",
    ),
    Row(
        "bad masks and selectors",
        "mask-int-leaves",
        lambda: _update(gx.masked(gx.sgd(1e-3), {"w": 1, "b": 0}), P),
        TypeError,
        r"masked: mask leaves must be Python bools \(or None\), got 0 at b",
    ),
    Row(
        "bad masks and selectors",
        "weight-decay-mask-missing-leaf",
        lambda: _update(gx.adamw(1e-3, weight_decay_mask={"w": True}), P),
        ValueError,
        r"add_decayed_weights: the mask tree is not a prefix of the params tree; first differing path: b",
    ),
    Row(
        "bad masks and selectors",
        "pattern-matches-nothing",
        lambda: _update(gx.masked(gx.sgd(1e-3), "**/kernel"), P),
        ValueError,
        r"masked: pattern '\*\*/kernel' matches no path in the params\. Available paths \(2\): b, w",
    ),
    Row(
        "bad masks and selectors",
        "freeze-pattern-matches-nothing",
        lambda: _update(gx.freeze(gx.sgd(1e-3), "enc/*"), P),
        ValueError,
        r"freeze: pattern 'enc/\*' matches no path in the params\. Available paths \(2\): b, w",
    ),
    Row(
        "bad masks and selectors",
        "match-pattern-matches-nothing",
        lambda: _update(gx.partition({"a": gx.sgd(1e-3)}, gx.match({"zzz": "a"}, default="a")), P),
        ValueError,
        r"partition: pattern 'zzz' matches no path in the params",
    ),
    Row(
        "bad masks and selectors",
        "label-without-transform",
        lambda: _update(gx.partition({"a": gx.sgd(1e-3)}, {"w": "a", "b": "c"}), P),
        ValueError,
        r"partition: labels and transforms do not correspond\.\s+labels with no transform: \['c'\]\s+transforms given for: \['a'\]",
    ),
    Row(
        "bad masks and selectors",
        "transform-without-label",
        lambda: _update(
            gx.partition({"a": gx.sgd(1e-3), "z": gx.sgd(1.0)}, {"w": "a", "b": "a"}), P
        ),
        ValueError,
        r"transforms no parameter is labelled for: \['z'\]",
    ),
    Row(
        "bad masks and selectors",
        "labels-missing-leaf",
        lambda: _update(gx.partition({"a": gx.sgd(1e-3)}, {"w": "a"}), P),
        ValueError,
        r"partition: the labels tree is not a prefix of the params tree; first differing path: b \(in params but not in the labels\)",
    ),
    Row(
        "bad masks and selectors",
        "predicate-not-scalar-bool",
        lambda: _update(gx.conditionally_transform(gx.sgd(1e-3), lambda c: jnp.ones(3, bool)), P),
        ValueError,
        r"conditionally_transform: should_transform_fn must return a scalar bool, got shape \(3,\)",
    ),
    # ---- not transforms where transforms are expected
    Row(
        "not a transform",
        "chain-member-function",
        lambda: gx.chain(gx.sgd(1e-3), lambda g: g),
        TypeError,
        r"chain: argument 1 must be a gradient transformation \(with \.init and \.update\), got <function",
    ),
    Row(
        "not a transform",
        "chain-member-none",
        lambda: gx.chain(gx.sgd(1e-3), None),
        TypeError,
        r"chain: argument 1 must be a gradient transformation .* got None",
    ),
    Row(
        "not a transform",
        "masked-inner-string",
        lambda: gx.masked("sgd", {"w": True}),
        TypeError,
        r"masked: inner must be a gradient transformation .* got 'sgd'",
    ),
    Row(
        "not a transform",
        "partition-transforms-list",
        lambda: gx.partition([gx.sgd(1e-3)], {"w": 0, "b": 0}),
        TypeError,
        r"partition: transforms must be a non-empty dict \{label: transform\}, got \[",
    ),
    # ---- full-batch solvers
    Row(
        "full-batch solvers",
        "minimize-non-scalar-fn",
        lambda: gx.minimize(lambda p: p["w"], P, gx.lbfgs()),
        TypeError,
        r"minimize: value_fn must return a real scalar \(or \(scalar, aux\)\), got float32\[2, 3\]",
    ),
    Row(
        "full-batch solvers",
        "lbfgs-complex-params",
        lambda: gx.minimize(_quadratic, jnp.ones(2, jnp.complex64), gx.lbfgs()),
        TypeError,
        r"minimize: complex parameter at <root>; line searches and full-batch methods support real parameters only",
    ),
    Row(
        "full-batch solvers",
        "cg-complex-params",
        lambda: gx.minimize(_quadratic, {"z": jnp.ones(2, jnp.complex64)}, gx.conjugate_gradient()),
        TypeError,
        r"minimize: complex parameter at \['z'\]; line searches and full-batch methods support real",
    ),
]


def test_table_is_large_and_ids_are_unique():
    assert len(ROWS) >= 40
    ids = [(r.category, r.id) for r in ROWS]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.category}-{r.id}".replace(" ", "_") for r in ROWS])
def test_bad_input(row):
    with pytest.raises(row.exc, match=row.match):
        row.trigger()


def test_found_while_building_the_table():
    # Each was accepted silently or failed far from its cause.
    p = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    tx = gx.adam(1e-3)
    with pytest.raises(TypeError, match=r"updates leaf at \['w'\] is str 'abc', where the param"):
        tx.update({"w": "abc", "b": jnp.zeros(3)}, tx.init(p), p)
    for bad, got in ((lambda c: jnp.ones(3), r"float32\[3\]"), (lambda c: None, "None")):
        sgd = gx.sgd(bad)
        with pytest.raises(
            TypeError, match=rf"the schedule .* must return a real scalar, got {got}"
        ):
            sgd.update(p, sgd.init(p), p)
    with pytest.raises(TypeError, match="nu_dtype must be None or a real floating dtype"):
        gx.adam(1e-3, nu_dtype=jnp.complex64)
