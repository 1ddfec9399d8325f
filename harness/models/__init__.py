"""Networks and name-based access to their layers.

``InceptionV1`` is Lucid's GoogLeNet with config edits (``widen``/``insert``);
``torchvision_model`` builds any torchvision classifier by name. ``hook_points``
and ``layers`` give both the same interface: layer name -> module / channels.
"""

from harness.models.edits import BRANCHES, CONCAT_BRANCHES, MIXED_NAMES, Plan, plan_inception, widen_targets
from harness.models.inception_v1 import ConvReLU, InceptionBlock, InceptionV1
from harness.models.zoo import classification_models, hook_points, layers, torchvision_model

__all__ = [
    "BRANCHES",
    "CONCAT_BRANCHES",
    "MIXED_NAMES",
    "ConvReLU",
    "InceptionBlock",
    "InceptionV1",
    "Plan",
    "classification_models",
    "hook_points",
    "layers",
    "plan_inception",
    "torchvision_model",
    "widen_targets",
]
