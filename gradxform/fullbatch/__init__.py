"""Full-batch optimization: line searches, L-BFGS, nonlinear conjugate gradient, ``minimize``.

These transforms need the objective itself, not only a gradient: their ``update`` takes
``value``, ``grad`` and ``value_fn`` keywords (``minimize`` runs the whole loop for you).

- ``linesearch``: the ``LineSearch`` base, the backtracking (Armijo) search and
  ``gradient_descent_linesearch``; ``zoom``: the strong-Wolfe search;
- ``lbfgs``: L-BFGS, optionally with box bounds (projected);
- ``cg``: nonlinear conjugate gradient (Fletcher-Reeves, Polak-Ribiere, Hestenes-Stiefel,
  Dai-Yuan);
- ``minimize``: a jit-compiled loop around any transform, with a status;
- ``_common``: dtype, box and value-and-gradient helpers shared by the above.
"""
