"""Networks and name-based access to their layers.

``InceptionV1`` is Lucid's GoogLeNet with config edits (``widen``/``insert``);
``torchvision_model`` builds any torchvision classifier by name. ``hook_points``
and ``layers`` give both the same interface: layer name -> module / channels (``names``).
Reading trained weights (``pretrained``), function-preserving edits of them (``surgery``)
and freezing (``freeze``) live in their own modules; ``build`` runs them in order
(config -> architecture -> construct -> load weights -> edit -> freeze).
Modules inside this package import each other by module, never through this file.
InceptionV1's width table and edit plans are torch-free facts: :mod:`harness.facts.edits`.

Not exported: ``inception_v1`` (the build function), since the submodule of that name would shadow it;
import it as ``from harness.models.build import inception_v1``.
"""

from harness.models.build import architecture, build_model, load_net, model_architecture
from harness.models.freeze import freeze_old
from harness.models.inception_v1 import ConvReLU, InceptionBlock, InceptionV1
from harness.models.names import default_layers, hook_points, layers, resolve
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
    "ConvReLU",
    "InceptionBlock",
    "InceptionV1",
    "added_units",
    "architecture",
    "build_model",
    "classification_models",
    "default_layers",
    "freeze_old",
    "hook_points",
    "layers",
    "least_active_units",
    "load_lucid",
    "load_net",
    "max_output_change",
    "model_architecture",
    "prune_least_active",
    "prune_units",
    "read_state_dict",
    "resize",
    "resolve",
    "torchvision_model",
]
