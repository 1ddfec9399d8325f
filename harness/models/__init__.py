"""Networks and name-based access to their layers.

``InceptionV1`` is Lucid's GoogLeNet with config edits (``widen``/``insert``);
``torchvision_model`` builds any torchvision classifier by name. ``hook_points``
and ``layers`` give both the same interface: layer name -> module / channels.
Trained weights (``pretrained``) and function-preserving edits of them (``surgery``,
``freeze``) live in their own modules.
"""

from harness.models.edits import BRANCHES, CONCAT_BRANCHES, MIXED_NAMES, Plan, plan_inception, widen_targets
from harness.models.freeze import freeze_old
from harness.models.inception_v1 import ConvReLU, InceptionBlock, InceptionV1
from harness.models.pretrained import architecture, load_lucid, read_state_dict
from harness.models.surgery import (
    added_units,
    least_active_units,
    max_output_change,
    prune_least_active,
    prune_units,
    resize,
)
from harness.models.zoo import classification_models, hook_points, layers, torchvision_model

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
    "classification_models",
    "freeze_old",
    "hook_points",
    "layers",
    "least_active_units",
    "load_lucid",
    "max_output_change",
    "plan_inception",
    "prune_least_active",
    "prune_units",
    "read_state_dict",
    "resize",
    "torchvision_model",
    "widen_targets",
]
