"""The probe contract: what a probe receives (`ProbeContext`), returns (`ProbeResult`) and promises.

A probe measures a model and changes nothing: it never updates weights, restores train/eval mode
(`harness.models.hooks.eval_mode`), leaves no hooks behind, and is deterministic for a given `ctx.seed`.
Scalars are keyed `<layer>/<metric>` (the runner prefixes the probe name: `curves/mixed3b/detectors`);
per-unit rows go into tables; pictures are HxWx3 uint8 arrays.

Why a context object instead of a long argument list: probes share one probe set and one forward
pass per batch (`ctx.activations()` captures every requested layer at once and caches it), and some
need extras (a reference model for CKA, a fresh random-init copy as a control, the widen edits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from harness.models.hooks import capture, eval_mode, forward_until
from harness.probes.memory import check_capture
from harness.probes.probe_set import ProbeSet


@dataclass
class ProbeResult:
    """What one probe found. Usage: ``ProbeResult(scalars={"mixed3b/detectors": 7.0})``"""

    scalars: dict[str, float] = field(default_factory=dict)  # "<layer>/<metric>" -> value
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> per-unit rows
    images: dict[str, np.ndarray] = field(default_factory=dict)  # name -> HxWx3 uint8
    info: dict[str, Any] = field(default_factory=dict)  # small non-scalar facts (e.g. curve_cluster_layer)
    # (layer, unit) -> HxWx3 uint8 picture of that unit (its feature visualisation, its top examples): wandb
    # shows it as an image cell of the unit's table row; the composite in `images` holds the same pixels on disk.
    unit_images: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)


@dataclass
class ProbeContext:
    """Everything a probe may use. Usage: ``ctx = ProbeContext(net, ["mixed3b"], probe_set); ctx.activations()``"""

    model: nn.Module
    layers: list[str]
    probe_set: ProbeSet
    reference: nn.Module | None = None  # e.g. the run's initial weights (CKA default)
    make_model: Callable[[], nn.Module] | None = None  # same architecture, fresh random init (controls)
    widen: Mapping[str, int] = field(default_factory=dict)  # the run's widen edits: added = last n units
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    batch_size: int = 128  # images per forward pass at 64 px; fewer for larger images (`images_per_pass`)
    max_activation_bytes: int | None = None  # one model's capture over the probe set (`probing.max_activation_gb`)
    # Results of probes already run this round, by name: consumers (ablation, lineage, featvis) reuse the
    # curves/dissect verdicts instead of recomputing them.
    results: dict[str, ProbeResult] = field(default_factory=dict)
    _cache: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict, repr=False)

    def activations(
        self, layers: Sequence[str] | None = None, model: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        """Post-ReLU activations [N, C, H, W] (or [N, F]) over the whole probe set, float32 on CPU.

        The first call for a model captures every layer in `self.layers` plus the requested ones in
        one pass over the probe set; later calls (by any probe) are served from the cache.
        """
        model = self.model if model is None else model
        wanted = list(dict.fromkeys(list(layers or self.layers)))
        key = id(model)
        missing = [name for name in dict.fromkeys([*self.layers, *wanted]) if (key, name) not in self._cache]
        if missing and any((key, name) not in self._cache for name in wanted):
            # Each batch is copied straight into one preallocated NCHW float32 tensor per layer: collecting
            # batches and concatenating would hold every activation twice at the peak (GBs at 224 px).
            out: dict[str, torch.Tensor] = {}
            n = len(self.probe_set)
            with torch.no_grad(), eval_mode(model), capture(model, missing) as cache:
                start = 0
                for x, _ in self._batches():
                    forward_until(model, x, missing)
                    if not out:  # the first batch: the layers' sizes are known, nothing allocated yet
                        sizes = {name: int(cache[name][0].numel()) * 4 for name in missing}
                        check_capture(sizes, n, self.max_activation_bytes)
                    for name in missing:
                        value = cache[name]
                        if name not in out:
                            out[name] = torch.empty((n, *value.shape[1:]), dtype=torch.float32)
                        out[name][start : start + len(value)].copy_(value)
                    start += len(x)
            self._cache.update({(key, name): value for name, value in out.items()})
        return {name: self._cache[(key, name)] for name in wanted}

    def cached_activations(self, layer: str, model: nn.Module | None = None) -> torch.Tensor | None:
        """`layer`'s activations over the probe set if a probe has already captured them, else None (no pass)."""
        return self._cache.get((id(self.model if model is None else model), layer))

    def images_per_pass(self, height: int, width: int | None = None) -> int:
        """Images per forward pass for images of this size: `batch_size` at 64 x 64 px or less, scaled down by
        the pixel count above that (224 px: 10).

        Why: on CPU a pass is fastest when its activations stay in cache; measured on the full InceptionV1 at
        224 px (2 threads), batches of 4-12 images ran 1.5-1.9x faster than 128, and hold ~10x less memory.
        """
        pixels = height * (height if width is None else width)
        return max(1, int(self.batch_size * min(1.0, 64 * 64 / max(pixels, 1))))

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images = self.probe_set.images
        return self.probe_set.batches(self.images_per_pass(*images.shape[-2:]), device=self.device)

    def logits(self, model: nn.Module | None = None) -> torch.Tensor:
        """Model outputs [N, classes] over the probe set (eval mode, no grad)."""
        model = self.model if model is None else model
        with torch.no_grad(), eval_mode(model):
            return torch.cat([model(x).float().cpu() for x, _ in self._batches()])

    def added_units(self) -> dict[str, list[int]]:
        """Widened layer -> indices of the units the widen edit added (the last n channels of it)."""
        from harness.models.surgery import added_units

        return added_units(self.model, self.widen)

    def weights_changed(self) -> None:
        """Drop every cached activation: the weights changed since they were captured (a new training epoch)."""
        self._cache.clear()

    def random_init_model(self) -> nn.Module:
        """A fresh random init of the probed architecture (`make_model`) on the probe device, seeded by `seed`, so
        every probe's control is the same network; the global RNG is left alone."""
        if self.make_model is None:
            raise ValueError("ctx.make_model is None: no random-init control can be built")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.make_model().to(self.device)

    def forget(self, model: nn.Module) -> None:
        """Drop cached activations of a model (e.g. a temporary control) to free memory."""
        for key in [k for k in self._cache if k[0] == id(model)]:
            del self._cache[key]


class Probe:
    """Base class: subclasses set `name`, take their settings as keyword arguments, implement `run`.

    Usage: ``class DeadUnits(Probe): name = "activations"; def run(self, ctx): ...``
    """

    name: ClassVar[str] = "probe"
    cheap: ClassVar[bool] = False  # cheap probes may run every few epochs, the rest at the end
    order: ClassVar[int] = 0  # probes that read other probes' results (ctx.results) run later: order 1

    def __init__(self, layers: Sequence[str] | None = None) -> None:
        self.layers = list(layers) if layers else None

    def target_layers(self, ctx: ProbeContext) -> list[str]:
        """The layers this probe covers: its own `layers` setting, else the run's."""
        return self.layers or list(ctx.layers)

    def run(self, ctx: ProbeContext) -> ProbeResult:  # pragma: no cover - abstract
        raise NotImplementedError
