"""Networks and name-based access to their layers.

``InceptionV1`` is Lucid's GoogLeNet with config edits (``widen``/``insert``);
``torchvision_model`` builds any torchvision classifier by name. ``hook_points``
and ``layers`` give both the same interface: layer name -> module / channels (``names``).
Reading trained weights (``pretrained``), function-preserving edits of them (``surgery``)
and freezing (``freeze``) live in their own modules; ``build`` runs them in order
(config -> architecture -> construct -> load weights -> edit -> freeze).
Modules inside this package import each other by module, never through this file.
"""

from harness.models.build import architecture, build_model, inception_v1, load_net, model_architecture
from harness.models.edits import BRANCHES, CONCAT_BRANCHES, MIXED_NAMES, Plan, plan_inception, widen_targets
from harness.models.freeze import freeze_old
from harness.models.inception_v1 import ConvReLU, InceptionBlock, InceptionV1
from harness.models.names import hook_points, layers, resolve
from harness.models.pretrained import load_lucid, read_state_dict
from harness.models.surgery import (
    added_units,
    least_active_units,
    max_output_change,
    prune_least_active,
    prune_units,
    resize,
)
from harness.models.zoo import classification_models, torchvision_model

__all__ = [
    "BRANCHES",
    "CONCAT_BRANCHES",
    "MIXED_NAMES",
    "ConvReLU",
    "InceptionBlock",
    "InceptionV1",
    "Plan",
    "added_units",
    "architecture",
    "build_model",
    "classification_models",
    "freeze_old",
    "hook_points",
    "inception_v1",
    "layers",
    "least_active_units",
    "load_lucid",
    "load_net",
    "max_output_change",
    "model_architecture",
    "plan_inception",
    "prune_least_active",
    "prune_units",
    "read_state_dict",
    "resize",
    "resolve",
    "torchvision_model",
    "widen_targets",
]
