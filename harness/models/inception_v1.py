"""Lucid's InceptionV1 (GoogLeNet "inception5h") as a configurable PyTorch module.

Why not torchvision's googlenet: the curve-detector literature indexes units of
this exact network (Lucid names, TF "SAME" padding, LRN, biased convs, other
widths), so we rebuild it layer for layer. Every layer and branch keeps its
Lucid name (``mixed3b_5x5``) and is reachable through :meth:`InceptionV1.hook_points`,
so probes and config edits address layers by name, never by index.

Channel counts come from :func:`harness.facts.edits.plan_inception`; this file
only turns that plan into modules.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import nn

from harness.facts.edits import BRANCHES, BlockPlan, Plan, check_widen, plan_inception
from harness.facts.errors import ConfigError


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial dimension.

    TF puts the odd pixel at the end, which PyTorch's symmetric ``padding`` cannot
    express; at 224 px this yields conv2d0 (2, 3) and max pools (0, 1).
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad the last two dims of ``x`` TF-"SAME"-style; a no-op when nothing is needed."""
    top, bottom = same_pads(x.shape[-2], kernel, stride)
    left, right = same_pads(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class ConvReLU(nn.Module):
    """Conv (+ optional BatchNorm) + ReLU; the unit behind every named layer and branch.

    The module's output is the post-ReLU activation (Lucid's layer value). For the
    pre-ReLU value hook ``.bn`` (an ``nn.Identity`` without batch norm, so the
    hook point is the same either way). ReLU is not in-place so hooked tensors
    are never overwritten.

    Usage: ``ConvReLU(64, 192, kernel=3)(x)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        batch_norm: bool = False,
        same: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.same = kernel, stride, same
        # "same" convs pad dynamically in forward; the others pad symmetrically (stride 1).
        padding = 0 if same else kernel // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = pad_same(x, self.kernel, self.stride)
        return self.act(self.bn(self.conv(x)))


class SameMaxPool2d(nn.Module):
    """Max pool with TF "SAME" padding (pads with -inf, odd pixel at the end).

    Usage: ``SameMaxPool2d(3, 2)(x)``  # 112 px -> 56 px
    """

    def __init__(self, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel, self.stride, value=-math.inf)
        return F.max_pool2d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """One mixed layer: four parallel branches concatenated as 1x1, 3x3, 5x5, pool.

    Children are named ``conv_<branch>`` (``conv_3x3_bottleneck``, ...) plus
    ``pool`` and ``pool_reduce``; the block's own output is the concat, i.e. the
    Lucid ``mixedXX`` activation.

    Usage: ``InceptionBlock(BlockPlan("mixed3a", 192, widths))(x)``
    """

    def __init__(self, plan: BlockPlan, batch_norm: bool = False) -> None:
        super().__init__()
        w, cin = plan.widths, plan.in_channels
        self.conv_1x1 = ConvReLU(cin, w["1x1"], 1, batch_norm=batch_norm)
        self.conv_3x3_bottleneck = ConvReLU(cin, w["3x3_bottleneck"], 1, batch_norm=batch_norm)
        self.conv_3x3 = ConvReLU(w["3x3_bottleneck"], w["3x3"], 3, batch_norm=batch_norm)
        self.conv_5x5_bottleneck = ConvReLU(cin, w["5x5_bottleneck"], 1, batch_norm=batch_norm)
        self.conv_5x5 = ConvReLU(w["5x5_bottleneck"], w["5x5"], 5, batch_norm=batch_norm)
        # Stride-1 pool with symmetric padding 1: PyTorch's implicit padding is -inf, as in TF.
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pool_reduce = ConvReLU(cin, w["pool_reduce"], 1, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.conv_1x1(x),
                self.conv_3x3(self.conv_3x3_bottleneck(x)),
                self.conv_5x5(self.conv_5x5_bottleneck(x)),
                self.pool_reduce(self.pool(x)),
            ],
            dim=1,
        )

    def branches(self) -> dict[str, ConvReLU]:
        """Branch suffix (``"5x5"``) -> its unit, in the order of ``BRANCHES``."""
        return {b: getattr(self, "pool_reduce" if b == "pool_reduce" else f"conv_{b}") for b in BRANCHES}


# Input transforms by name: images arrive in [0, 1]; Lucid's weights expect x * 255 - 117.
INPUT_TRANSFORMS: tuple[str, ...] = ("none", "lucid")


def _check_args(num_classes: object, dropout: object, min_input_size: object) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 1:
        raise ConfigError(f"model.num_classes must be an integer >= 1, got {num_classes!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout must be a probability in [0, 1), got {dropout!r}")
    if isinstance(min_input_size, bool) or not isinstance(min_input_size, Integral) or min_input_size < 1:
        raise ConfigError(f"model.min_input_size must be an integer >= 1 (pixels), got {min_input_size!r}")


class InceptionV1(nn.Module):
    """Lucid's InceptionV1 with a width multiplier, optional batch norm/LRN and config edits.

    ``widen`` adds output channels to named stem layers or branches and ``insert``
    adds copies of a mixed layer right after it (``mixed3b_ins1``); all
    downstream ``in_channels`` follow. ``last_layer`` ends the network after a
    mixed layer (the head reads its pooled output). Module paths are ``features.<lucid name>``
    and ``fc``; use :meth:`hook_points` to go from a Lucid name to its module.

    The constructor only builds (random init, He-initialised): weights, widening of trained weights
    and freezing are the later steps of :func:`harness.models.build.inception_v1`.
    ``input_transform="lucid"`` maps [0, 1] images to ``x * 255 - 117`` (Lucid's preprocessing).

    Usage: ``InceptionV1(num_classes=8, width=0.25, batch_norm=True, lrn=False, widen={"mixed3b_5x5": 8})``
    """

    def __init__(
        self,
        *,
        num_classes: int = 1008,
        width: float = 1.0,
        batch_norm: bool = False,
        lrn: bool = True,
        widen: Mapping[str, int] | None = None,
        insert: Sequence[str] | None = None,
        dropout: float = 0.0,
        min_input_size: int = 32,
        last_layer: str | None = None,
        input_transform: str | None = None,
    ) -> None:
        super().__init__()
        _check_args(num_classes, dropout, min_input_size)
        arch = {"width": width, "batch_norm": batch_norm, "lrn": lrn, "insert": insert, "last_layer": last_layer,
                "input_transform": input_transform}  # fmt: skip
        total = widen
        transform = arch["input_transform"] or "none"
        if transform not in INPUT_TRANSFORMS:
            raise ConfigError(f"unknown model.input_transform {transform!r}; valid: {', '.join(INPUT_TRANSFORMS)}")
        self.plan: Plan = plan_inception(arch["width"], total, arch["insert"], arch["last_layer"])
        self.min_input_size = int(min_input_size)
        self.input_transform = transform
        # The architecture as constructor arguments (nothing loaded): surgery rebuilds variants from it.
        self.config = {
            "num_classes": int(num_classes), "width": float(arch["width"]), "batch_norm": bool(arch["batch_norm"]),
            "lrn": bool(arch["lrn"]), "widen": check_widen(total, arch["insert"], arch["last_layer"]),
            "insert": [ins] if isinstance(ins := arch["insert"], str) else list(ins or []), "dropout": float(dropout),
            "min_input_size": int(min_input_size), "last_layer": arch["last_layer"], "input_transform": transform,
        }  # fmt: skip
        batch_norm, lrn = self.config["batch_norm"], self.config["lrn"]

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        (c0, s0), (c1, s1), (c2, s2) = [(cin, cout) for _, cin, cout in self.plan.stem]
        layers["conv2d0"] = ConvReLU(c0, s0, 7, stride=2, batch_norm=batch_norm, same=True)
        layers["maxpool0"] = SameMaxPool2d(3, 2)
        if lrn:
            layers["localresponsenorm0"] = nn.LocalResponseNorm(size=9, alpha=1e-4, beta=0.5, k=1.0)
        layers["conv2d1"] = ConvReLU(c1, s1, 1, batch_norm=batch_norm)
        layers["conv2d2"] = ConvReLU(c2, s2, 3, batch_norm=batch_norm)
        if lrn:
            layers["localresponsenorm1"] = nn.LocalResponseNorm(size=9, alpha=1e-4, beta=0.5, k=1.0)
        layers["maxpool1"] = SameMaxPool2d(3, 2)
        for block in self.plan.blocks:
            layers[block.name] = InceptionBlock(block, batch_norm=batch_norm)
            if block.pool_after:
                layers[block.pool_after] = SameMaxPool2d(3, 2)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Lucid: 7x7 average pool; adaptive = any input size
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(self.plan.out_channels, int(num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for every conv, zero biases.

        Why: PyTorch's default conv init (variance 1/(3 fan_in)) shrinks the
        signal variance several-fold per conv+ReLU; without batch norm, ~20 convs deep,
        the final features start ~100x smaller in std than the input and training
        from scratch stalls. He init keeps the variance roughly constant with depth.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    @property
    def channels(self) -> dict[str, int]:
        """Layer/branch name -> output channels, in forward order (no forward pass needed)."""
        return dict(self.plan.channels)

    def check_input_size(self, size: int) -> None:
        """Raise ConfigError when images of ``size`` px are smaller than the network allows."""
        if size < self.min_input_size:
            raise ConfigError(
                f"image size {size} px is too small for inception_v1: it needs at least {self.min_input_size} px"
            )

    def hook_points(self) -> dict[str, nn.Module]:
        """Lucid name -> module whose forward output is that (post-ReLU) activation.

        Forward order, each mixed layer before its branches. Max pools and LRN are
        not activations in Lucid's sense and are left out (reach them via
        ``model.features.maxpool4``).
        """
        points: dict[str, nn.Module] = {}
        for name, _, _ in self.plan.stem:
            points[name] = self.features.get_submodule(name)
        for block in self.plan.blocks:
            module = self.features.get_submodule(block.name)
            points[block.name] = module
            points.update({f"{block.name}_{b}": unit for b, unit in module.branches().items()})
        return points

    def resume_point(self, layer: str) -> tuple[str, nn.Module]:
        """(name, module) of the `features` stage that computes hook point `layer`: where `forward_from` starts.

        Why: a probe that changes one layer (ablation zeroes units of `mixed3b_5x5`) can cache the input of
        that layer's stage once and rerun only the rest of the network for every variant of the change.
        """
        points = self.hook_points()
        if layer not in points:
            raise ConfigError(f"unknown layer {layer!r}; valid: {', '.join(points)}")
        target = points[layer]
        for name, stage in self.features.named_children():
            if stage is target or any(m is target for m in stage.modules()):
                return name, stage
        raise ConfigError(f"layer {layer!r} is not inside a features stage")  # pragma: no cover - by construction

    def forward_from(self, stage: str, x: torch.Tensor) -> torch.Tensor:
        """The logits given `x` = the input of `features` stage `stage` (as captured in a full forward pass)."""
        names = [name for name, _ in self.features.named_children()]
        if stage not in names:
            raise ConfigError(f"unknown stage {stage!r}; valid: {', '.join(names)}")
        for module in list(self.features.children())[names.index(stage) :]:
            x = module(x)
        return self._head(x)

    def forward_after(self, stage: str, x: torch.Tensor) -> torch.Tensor:
        """The logits given `x` = the output of `features` stage `stage`: the network after that stage.

        Why: ablating units of a mixed layer's own output changes nothing inside that stage, so the ablated
        passes start after it (mixed3b is ~30% of the FLOPs from mixed3b to the head at any image size).
        """
        names = [name for name, _ in self.features.named_children()]
        if stage not in names:
            raise ConfigError(f"unknown stage {stage!r}; valid: {', '.join(names)}")
        for module in list(self.features.children())[names.index(stage) + 1 :]:
            x = module(x)
        return self._head(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = min(x.shape[-2], x.shape[-1])
        if size < self.min_input_size:
            self.check_input_size(size)
        if self.input_transform == "lucid":
            x = x * 255.0 - 117.0  # Lucid's preprocessing: [0, 1] images to the range its weights expect
        return self._head(self.features(x))
