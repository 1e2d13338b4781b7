"""Wrappers: transforms that take other transforms and decide where, when or how they act.

- ``selectors``: the one selector language (trees of bools or labels, ``where``
  predicates, ``match`` key-path patterns) used by every mask in the package;
- ``masking``: ``masked``, ``freeze``, ``partition`` (which parameters a transform sees);
- ``conditional``: ``apply_if_finite``, ``skip_large_updates``, ``conditionally_transform``
  (which steps run);
- ``accumulate``: gradient accumulation over micro-batches;
- ``lookahead``: slow and fast weights;
- ``plateau``: ``reduce_on_plateau``;
- ``projections``: ``project``, ``keep_params_nonnegative`` (constraints on the result);
- ``averaging``: ``ema_params``, ``swa`` and ``eval_params`` (averages of the params);
- ``sam``: sharpness-aware minimization (one extra gradient per step);
- ``loss_scale``: ``dynamic_loss_scale`` for float16 training.

Every wrapper holds the wrapped transform in a field named ``inner`` (``partition``: a
dict ``transforms``) and its state holds the wrapped state in a field named
``inner_state`` (``partition``: a dict of them, by label).
"""
