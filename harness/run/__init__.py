"""A training run's plumbing around Lightning: what ``harness-train`` and ``harness-probe`` share.

- the LightningModule (``module``), callbacks (``callbacks``), progress lines (``progress``), quiet logs (``quiet``),
  precision (``precision``), rank zero under DDP (``distributed``);
- the run record writer (``records``), resuming (``resume``), the closing summary (``summary``);
- wandb: logger (``wandb_logger``), layout (``wandb_layout``), probe rounds (``wandb_probes``), the offline reader
  (``wandb_offline``), sweep sync (``wandb_sync``);
- building a run from its config: ``builders`` (model, probes, controls), ``recipes`` (recipe keys -> edits),
  ``validate`` (the composed config), ``command_line`` (overrides before Hydra), ``variant`` (the run's name).

Nothing here imports a probe or an entry point; probes write their rounds through ``records``.
"""
