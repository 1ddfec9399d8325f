"""Growing a trained network: how new units start and what carries over to the grown run.

- ``widen_init``: ``model.widen_init`` (zero, net2net, gradmax, tiny) applied to the units a widen added;
- ``gradmax_init`` / ``tiny_init``: the data-driven inits (GradMax, TINY), on ``new_units``' gradient passes;
- ``carry``: the optimizer state and LR schedule carried through the unit maps.

Used by every widened run (``harness-train``), the oracle's tier 0 and the grow loop (``harness.grow``, which
decides *where* and *when* to grow; this package is *how*). It stands above ``probes`` (gradient passes, GradMax's
rows) and below ``oracle`` and ``grow``.
"""
