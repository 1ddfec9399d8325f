"""Networks and name-based access to their layers.

``InceptionV1`` is Lucid's GoogLeNet with config edits (``widen``/``insert``);
``torchvision_model`` builds any torchvision classifier by name. ``hook_points``
and ``layers`` give both the same interface: layer name -> module / channels (``names``).
Reading trained weights (``pretrained``), function-preserving edits of them (``surgery``)
and freezing (``freeze``) live in their own modules; ``build`` runs them in order
(config -> architecture -> construct -> load weights -> edit -> freeze).
Modules inside this package import each other by module, never through this file.

Why the names below load lazily (PEP 562): ``edits`` is torch-free, and torch-free readers of runs
(harness-suggest) take branch lists and layer facts from it; importing ``harness.models.edits`` runs
this file first, which must therefore not import torch.
"""

from __future__ import annotations

from harness.lazy import lazy_exports

# Public name -> the module that defines it. Not `inception_v1` (the build function): the submodule of that name
# becomes the package attribute as soon as anything imports it, so the export would sometimes be the module.
# Import it as `from harness.models.build import inception_v1`.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["architecture", "build_model", "load_net", "model_architecture"], "build"),
    **dict.fromkeys(["BRANCHES", "CONCAT_BRANCHES", "MIXED_NAMES", "Plan", "plan_inception", "widen_targets"], "edits"),
    "freeze_old": "freeze",
    **dict.fromkeys(["ConvReLU", "InceptionBlock", "InceptionV1"], "inception_v1"),
    **dict.fromkeys(["default_layers", "hook_points", "layers", "resolve"], "names"),
    **dict.fromkeys(["load_lucid", "read_state_dict"], "pretrained"),
    **dict.fromkeys(
        ["added_units", "least_active_units", "max_output_change", "prune_least_active", "prune_units", "resize"],
        "surgery",
    ),  # fmt: skip
    **dict.fromkeys(["classification_models", "torchvision_model"], "zoo"),
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
