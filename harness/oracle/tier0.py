"""Tier-0 oracle: how much can a candidate's k new units lower the training loss right now? No seeds, no fine-tune.

Why (docs/DESIGN.md, "Where to grow"): the fine-tune oracle (tier 1) measures the difference of two stochastic
runs, and at its defaults the seed noise was 3-5x the spread between candidates. Tier 0 asks the first-order
question GradMax, TINY and SENN estimate, by doing it: for each candidate it adds the budget's units to the trained
base with TINY's init (fan-in and fan-out from the projected desired update, amplitude by a line search on a fixed
set A of training images, :mod:`harness.growth.tiny_init`; with ``amplitude="held_out"`` the directions come from
A's first half and the amplitude from its second), then measures the realised loss decrease on a disjoint
fixed set B, every network in eval mode so no batch-norm statistic moves. The gain of a candidate is
``control loss - candidate loss`` on B (> 0 helps), with a paired bootstrap over B's images: every candidate and
the control see the same images, and every bootstrap replicate draws the same indices for all of them.

Why TINY and not GradMax: GradMax's units start with zero fan-in, so its realised step-0 change is exactly 0 for
every candidate by design (function-preserving); only an init that moves the function at step 0 can be measured
at step 0. Inserts are not scored: an inception block has no function-preserving or line-searchable identity
initialisation here (its bottlenecks are narrower than its input), so tier 0 has nothing to add for them.

Speed: a candidate changes nothing before the stage that holds its target, so TINY's passes on set A
(:func:`harness.growth.new_units.resumed`) and the gain's pass on set B (:func:`b_from_stage`, set B's stage inputs
computed once per stage on the base) start at that stage; the numbers are those of full passes.

Tier 0 is not neutral: it shares its mathematics with the gradient signals (TINY, GradMax). Judge every signal
against tier 1 too (``harness-oracle --tier 1``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from harness.facts.errors import ConfigError
from harness.growth.new_units import Batch, FromStage, prepare, resumed
from harness.growth.widen_init import added_by_config, init_units
from harness.models.hooks import eval_mode
from harness.oracle.candidates import CONTROL, Candidate, continued_model
from harness.oracle.scoring import spearman  # the rho every signal is scored with

log = logging.getLogger(__name__)

SET_A = 512  # images TINY's directions and line search run on (held-out amplitude: the first and second half)
# Disjoint images the gain is measured on. Why 8192: at 1024 the ranking's split-half reliability (reliability())
# averaged 0.38 over 12 world_hard bases (-0.05 .. 0.75), mostly which images B drew; at 8192 it averaged 0.82
# (0.26 on an unplanted base with no spread to find, 0.71 .. 0.95 elsewhere), for 2.2-3.5x the wall time
# (docs/results/2026-12-06-planted-world-hard.md). The training split must hold set A + set B (one error line if not).
SET_B = 8192
INIT = "tiny"  # see the module docstring: GradMax's step-0 change is 0 by construction
# Where TINY's line search runs: "same" = on set A, where its directions were fit; "held_out" = directions from
# A's first half, amplitude from its second half (a direction that fits only its own images then gets gamma = 0).
# Default held_out, measured on 9 converged bases (docs/results/2026-12-06-loop-ceiling.md): with "same" every
# gradient signal anti-correlated with the gain (mean rho -0.33 .. -0.45: the strongest directions got the largest
# overfit steps) and 131 of 243 gains were resolved below 0; held out, the signals sit near 0, 45 gains are below 0,
# and tier 0 takes 74-119 s instead of 196-443 s per base (a 256-image line search).
AMPLITUDES = ("same", "held_out")
AMPLITUDE = "held_out"
BOOTSTRAP_REPS = 2000
LEVEL = 0.95
GAIN = "gain_train_loss"
SPLITS = 200  # random halvings of set B behind the split-half reliability (r moved by ~0.01 between split seeds)


@dataclass(frozen=True)
class FixedSets:
    """Set A (batches for the init's line search) and set B (images the gain is measured on), disjoint."""

    a: list[Batch]
    b_images: torch.Tensor
    b_labels: torch.Tensor


def fixed_sets(data_cfg: Mapping[str, Any], n_a: int = SET_A, n_b: int = SET_B, seed: int = 0) -> FixedSets:
    """The first ``n_a`` and the next ``n_b`` training images of the base run's data, in a seeded fixed order."""
    if n_a < 1 or n_b < 1:
        raise ConfigError(f"--set-a and --set-b must be >= 1 image, got {n_a} and {n_b}")
    dm = hydra.utils.instantiate(OmegaConf.create(dict(data_cfg)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        total = len(loader.dataset) if hasattr(loader, "dataset") else None
        if total is not None and n_a + n_b > total:
            raise ConfigError(f"set A ({n_a}) + set B ({n_b}) images exceed the training split ({total} images); "
                              "lower --set-a / --set-b")  # fmt: skip
        xs, ys = [], []
        for x, y in loader:
            xs.append(x)
            ys.append(y)
            if sum(len(b) for b in ys) >= n_a + n_b:
                break
    have = sum(len(b) for b in ys)
    if have < n_a + n_b:
        raise ConfigError(f"set A ({n_a}) + set B ({n_b}) images exceed the training split ({have} images)")
    x, y = torch.cat(xs)[: n_a + n_b], torch.cat(ys)[: n_a + n_b]
    return FixedSets(chunks(x[:n_a], y[:n_a], max(len(b) for b in ys)), x[n_a:], y[n_a:])


B_BATCH = 256  # images per forward pass on set B


def chunks(x: torch.Tensor, y: torch.Tensor, size: int) -> list[Batch]:
    """(images, labels) in consecutive batches of ``size`` (the last may be shorter)."""
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def halves(batches: Sequence[Batch]) -> tuple[list[Batch], list[Batch]]:
    """The batches' images split in two halves (first, second), in order: TINY's directions and its amplitude."""
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if len(y) < 2:
        raise ConfigError(f"a held-out amplitude needs set A (--set-a) of >= 2 images, got {len(y)}")
    size, half = max(len(b[1]) for b in batches), len(y) // 2
    return chunks(x[:half], y[:half], size), chunks(x[half:], y[half:], size)


def check_amplitude(amplitude: str) -> None:
    """One line for an ``amplitude`` that is not one of ``AMPLITUDES`` (the CLI's check and the library's)."""
    if amplitude not in AMPLITUDES:
        raise ConfigError(f"--amplitude must be one of {', '.join(AMPLITUDES)} (where tier 0's line search runs), "
                          f"got {amplitude!r}")  # fmt: skip


def line_search_sets(sets: FixedSets, amplitude: str) -> tuple[list[Batch], list[Batch] | None]:
    """(TINY's direction batches, its line-search batches or None = the same ones) for ``amplitude``."""
    check_amplitude(amplitude)
    return halves(sets.a) if amplitude == "held_out" else (sets.a, None)


def b_batches(sets: FixedSets, batch: int = B_BATCH) -> list[Batch]:
    return chunks(sets.b_images, sets.b_labels, batch)


@torch.no_grad()
def per_image_losses(net: nn.Module, batches: Sequence[Batch]) -> np.ndarray:
    """Cross-entropy of every image, eval mode, float64 (the paired differences are small)."""
    device = next(net.parameters()).device
    out = []
    with eval_mode(net):
        for x, y in batches:
            logits = net(prepare(x.to(device))).double()
            out.append(F.cross_entropy(logits, y.to(device).long(), reduction="none").cpu())
    return torch.cat(out).numpy()


def b_from_stage(base: nn.Module, net: nn.Module, target: str, sets: FixedSets,
                 cache: dict[str, list[Batch]]) -> tuple[nn.Module, list[Batch]]:  # fmt: skip
    """(``net`` from the first stage holding ``target``, set B's inputs to that stage), the inputs computed once per
    stage on the base. Why the base's: a widen changes nothing before the target's stage (the grown network's
    earlier layers are the base's, copied), so every candidate of a stage sees the same tensors there."""
    batches = b_batches(sets)
    if not callable(getattr(base, "resume_point", None)):
        return net, batches
    stage = base.resume_point(target)[0]
    if stage not in cache:
        _, cache[stage] = resumed(base, batches, [target])
    return FromStage(net, stage), cache[stage]


def grown(model_cfg: Mapping[str, Any], ckpt: str, cand: Candidate, search: tuple[list[Batch], list[Batch] | None],
          num_classes: int, image_size: int) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """The base plus the candidate's units, TINY-initialised on set A (``search``: :func:`line_search_sets`), built
    as a tier-1 job builds it."""
    cfg = continued_model(model_cfg, ckpt, cand)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = hydra.utils.instantiate(OmegaConf.create(cfg), num_classes=num_classes)
    added = added_by_config(cfg, net)
    if not added:
        return net, {}
    return net, init_units(net, added, search[0], INIT, image_size, search[1])


def bootstrap_indices(n: int, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> np.ndarray:
    """[reps, n] image indices, shared by every candidate (the pairing of the bootstrap)."""
    return np.random.default_rng(seed).integers(n, size=(reps, n))


def interval(diffs: np.ndarray, idx: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean paired difference."""
    means = diffs[idx].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diffs.mean()), float(low), float(high)


def tier0(
    model_cfg: Mapping[str, Any],
    ckpt: str,
    base: nn.Module,
    candidates: Sequence[Candidate],
    sets: FixedSets,
    num_classes: int,
    image_size: int,
    seed: int = 0,
    amplitude: str = AMPLITUDE,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """({candidate: gain_train_loss, _low, _high, loss_change_a, gamma}, {candidate: per-image gains on B})."""
    search = line_search_sets(sets, amplitude)  # once: every candidate searches on the same batches
    control = per_image_losses(base, b_batches(sets))
    idx = bootstrap_indices(len(control), seed=seed)
    rows: dict[str, dict[str, Any]] = {}
    diffs: dict[str, np.ndarray] = {}
    stage_inputs: dict[str, list[Batch]] = {}  # set B at each stage's input, from the base (b_from_stage)
    for cand in candidates:
        if cand.kind != "widen":
            continue  # inserts and the control: see the module docstring
        net, info = grown(model_cfg, ckpt, cand, search, num_classes, image_size)
        diffs[cand.name] = d = control - per_image_losses(*b_from_stage(base, net, cand.target, sets, stage_inputs))
        mean, low, high = interval(d, idx)
        target = next(iter(info.values()), {})
        rows[cand.name] = {GAIN: mean, f"{GAIN}_low": low, f"{GAIN}_high": high,
                           "loss_change_a": target.get("loss_change", math.nan),
                           "gamma": target.get("gamma")}  # fmt: skip
        log.info("tier 0: %s %+.4g [%.4g, %.4g]", cand.name, mean, low, high)
    return rows, diffs


def winner_resolved(diffs: Mapping[str, np.ndarray], seed: int = 0) -> tuple[str, str, tuple[float, float, float]]:
    """(winner, runner-up, interval of winner - runner-up gain): does tier 0's argmax stand apart?"""
    order = sorted((k for k in diffs if k != CONTROL), key=lambda k: -float(diffs[k].mean()))
    if len(order) < 2:
        raise ConfigError("tier 0 needs at least two candidates to name a winner")
    first, second = order[:2]
    d = diffs[first] - diffs[second]
    return first, second, interval(d, bootstrap_indices(len(d), seed=seed))


def reliability(diffs: Mapping[str, np.ndarray], splits: int = SPLITS, seed: int = 0) -> float:
    """Split-half reliability of tier 0's ranking: how far any signal's rho with tier 0 can reach.

    Why: tier 0 has no seed noise, but set B is a sample of images; where the candidates' true gains barely
    differ, their order on B is mostly which images B drew, and no signal can predict that. Each of ``splits``
    random halvings of B's images (the same halves for every candidate: the pairing) ranks the candidates by
    their mean gain on each half; the mean Spearman rho between the halves, stepped up to the whole set by
    Spearman-Brown (2 rho / (1 + rho)), is the reliability r. A signal's rho with tier 0 is then expected to stay
    below about sqrt(r) (classical test theory's attenuation bound; approximate for ranks). nan with fewer than
    3 candidates or 4 images."""
    names = [k for k in diffs if k != CONTROL]
    d = np.stack([np.asarray(diffs[k], dtype=float) for k in names]) if names else np.zeros((0, 0))
    if d.shape[0] < 3 or d.shape[1] < 4:
        return math.nan
    rng, half = np.random.default_rng(seed), d.shape[1] // 2
    rhos = []
    for _ in range(splits):
        order = rng.permutation(d.shape[1])
        rhos.append(spearman(d[:, order[:half]].mean(1), d[:, order[half:]].mean(1)))
    if not np.isfinite(rhos).any():
        return math.nan  # every half ranked constant gains: nothing to rank
    rho = float(np.nanmean(rhos))
    return 2 * rho / (1 + rho) if rho > -1 else -1.0
