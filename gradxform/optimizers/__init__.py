"""Named optimizers, one module per family.

Each module holds a family's primitive ``scale_by_*`` transforms (the per-coordinate
rescaling, with its state type) and its named aliases (``adam``, ``adamw``, ...), each a
one-line ``chain`` of primitives with the learning rate last. Moment helpers shared by
several families live in ``_moments``.

A new optimizer goes here: a module with its ``scale_by_*`` primitive, its alias and its
state type, one ``X as X`` line per public name in ``gradxform/__init__.py``, and one
entry in the test registry (``tests/helpers.py``). Full-batch methods (L-BFGS, nonlinear
CG) live in ``gradxform.fullbatch`` instead: they need the objective, not just a gradient.

Names are re-exported by ``gradxform`` only (``gx.adam``), so that no function shadows
the module of the same name (``gradxform.optimizers.adam`` is the module).
"""
