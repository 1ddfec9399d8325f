"""InceptionV1's width table and the config edits (widen / insert) applied to it.

Why a separate, torch-free module: an architecture variant is pure config
(``+model.widen.mixed3b_5x5=32``, ``+model.widen.mixed4a_3x3=-8`` to prune,
``model.insert=[mixed3b]``), so every edit is
validated and turned into a channel plan *before* any module is built. Bad input
fails in microseconds with a one-line :class:`ConfigError`, and the network code
only has to follow the plan: every ``in_channels`` comes from the channel flow
computed here, so widening one branch fixes all downstream layers automatically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

from harness.facts.errors import ConfigError

# Branch suffixes of an inception block, in the order of the width table.
BRANCHES: tuple[str, ...] = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
# Branches whose outputs are concatenated (in this order) to form the block output.
CONCAT_BRANCHES: tuple[str, ...] = ("1x1", "3x3", "5x5", "pool_reduce")

# Lucid's InceptionV1 ("inception5h"); see shared/reference/inceptionv1.md.
STEM: tuple[tuple[str, int], ...] = (("conv2d0", 64), ("conv2d1", 64), ("conv2d2", 192))
MIXED: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("mixed3a", (64, 96, 128, 16, 32, 32)),
    ("mixed3b", (128, 128, 192, 32, 96, 64)),
    ("mixed4a", (192, 96, 204, 16, 48, 64)),
    ("mixed4b", (160, 112, 224, 24, 64, 64)),
    ("mixed4c", (128, 128, 256, 24, 64, 64)),
    ("mixed4d", (112, 144, 288, 32, 64, 64)),
    ("mixed4e", (256, 160, 320, 32, 128, 128)),
    ("mixed5a", (256, 160, 320, 48, 128, 128)),
    ("mixed5b", (384, 192, 384, 48, 128, 128)),
)
# Stride-2 max pools that follow a mixed layer (after any blocks inserted behind it).
POOL_AFTER: dict[str, str] = {"mixed3b": "maxpool4", "mixed4e": "maxpool10"}
MIXED_NAMES: tuple[str, ...] = tuple(name for name, _ in MIXED)

# `_target_` of a model config that builds an InceptionV1: the build pipeline (conf/model/inception_v1*.yaml)
# and the class itself (the spelling of configs and run records written before harness.models.build existed).
INCEPTION_TARGET = "harness.models.build.inception_v1"
INCEPTION_TARGETS: tuple[str, ...] = (INCEPTION_TARGET, "harness.models.InceptionV1",
                                      "harness.models.inception_v1.InceptionV1")  # fmt: skip


def is_inception(model_cfg: Mapping[str, object]) -> bool:
    """True when a model config builds our InceptionV1 (any spelling of its `_target_`)."""
    target = str(model_cfg.get("_target_", ""))
    return target in INCEPTION_TARGETS or target.endswith("InceptionV1")


@dataclass(frozen=True)
class BlockPlan:
    """One inception block: its input channels, branch widths and the pool after it.

    Usage: ``BlockPlan("mixed3a", 192, {"1x1": 64, ...}).out_channels``
    """

    name: str
    in_channels: int
    widths: dict[str, int]
    pool_after: str | None = None

    @property
    def out_channels(self) -> int:
        return sum(self.widths[b] for b in CONCAT_BRANCHES)


@dataclass(frozen=True)
class Plan:
    """The complete channel flow of one InceptionV1 variant.

    ``stem`` holds (name, in_channels, out_channels) per stem conv; ``channels``
    maps every layer and branch name, in forward order, to its output channels.

    Usage: ``plan = plan_inception(width=0.25, widen={"mixed3b_5x5": 8}); plan.channels["mixed3b"]``
    """

    stem: tuple[tuple[str, int, int], ...]
    blocks: tuple[BlockPlan, ...]
    channels: dict[str, int]

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


def scale(channels: int, width: float) -> int:
    """Apply the width multiplier; a layer never drops below one channel."""
    return max(1, round(channels * width))


def _check_width(width: object) -> float:
    if isinstance(width, bool) or not isinstance(width, Real) or not width > 0:
        raise ConfigError(f"model.width must be a number > 0 (1.0 = Lucid's widths), got {width!r}")
    return float(width)


def _mixed(last_layer: str | None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The width-table rows up to and including ``last_layer`` (all of them for None)."""
    if last_layer is None:
        return MIXED
    if last_layer not in MIXED_NAMES:
        raise ConfigError(f"unknown model.last_layer {last_layer!r}; valid: {', '.join(MIXED_NAMES)}")
    return MIXED[: MIXED_NAMES.index(last_layer) + 1]


def _check_insert(insert: Sequence[str] | str | None, mixed: tuple = MIXED) -> list[str]:
    names = [name for name, _ in mixed]
    if insert is None:
        return []
    if not isinstance(insert, (str, Sequence)):
        raise ConfigError(f"model.insert must be a list of mixed layer names, got {insert!r}")
    # Hydra hands over ListConfig; a bare string means a single insert.
    items = [insert] if isinstance(insert, str) else list(insert)
    for item in items:
        if item not in names:
            raise ConfigError(f"cannot insert a block after {item!r} in model.insert; valid: {', '.join(names)}")
    return items


def _block_names(insert: list[str], mixed: tuple = MIXED) -> list[tuple[str, str]]:
    """(block name, the table row it copies) in forward order, inserted blocks included."""
    names = []
    for base, _ in mixed:
        names.append((base, base))
        names.extend((f"{base}_ins{i}", base) for i in range(1, insert.count(base) + 1))
    return names


def _check_widen(widen: Mapping[str, int] | None, targets: dict[str, tuple[str, str]]) -> dict[str, int]:
    if widen is None:
        return {}
    if not isinstance(widen, Mapping):
        raise ConfigError(f"model.widen must be a mapping of branch name to extra channels, got {widen!r}")
    mixed = {block for block, _ in targets.values() if block}
    out = {}
    for key, extra in dict(widen).items():  # dict(): Hydra hands over a DictConfig
        if key in mixed:
            branches = ", ".join(f"{key}_{b}" for b in BRANCHES)
            raise ConfigError(f"model.widen cannot target mixed layer {key!r} itself; widen a branch: {branches}")
        if key not in targets:
            raise ConfigError(f"unknown branch {key!r} in model.widen; valid: {', '.join(targets)}")
        if isinstance(extra, bool) or not isinstance(extra, Integral):
            raise ConfigError(
                f"model.widen.{key} must be an integer >= 0 to add channels (or < 0 to prune them), got {extra!r}"
            )
        out[key] = int(extra)
    return out


def _edited(name: str, base: int, extra: dict[str, int]) -> int:
    """Channels of ``name`` after its widen edit; pruning (a negative edit) must leave at least one."""
    out = base + extra.get(name, 0)
    if out < 1:
        raise ConfigError(
            f"model.widen.{name}={extra[name]} would leave {name} with {out} channels (it has {base}); "
            f"a layer must keep >= 1, so prune at most {base - 1}"
        )
    return out


def check_widen(
    widen: Mapping[str, int] | None, insert: Sequence[str] | str | None = None, last_layer: str | None = None
) -> dict[str, int]:
    """Validate widen edits (names and integer values, not the resulting widths) as a plain dict."""
    mixed = _mixed(last_layer)
    return _check_widen(widen, _targets(_check_insert(insert, mixed), mixed))


def add_widen(base: Mapping[str, int] | None, extra: Mapping[str, int]) -> dict[str, int]:
    """Two sets of widen edits applied one after the other (a loaded network's, then a config's)."""
    total = dict(base or {})
    for key, value in extra.items():
        total[key] = total.get(key, 0) + value
    return {k: v for k, v in total.items() if v != 0}


def widen_targets(insert: Sequence[str] | str | None = None, last_layer: str | None = None) -> list[str]:
    """Every name ``widen`` accepts for the given inserts, in forward order."""
    mixed = _mixed(last_layer)
    return list(_targets(_check_insert(insert, mixed), mixed))


def _targets(insert: list[str], mixed: tuple = MIXED) -> dict[str, tuple[str, str]]:
    """Widen-able name -> (block name or '' for the stem, branch or stem layer)."""
    targets = {name: ("", name) for name, _ in STEM}
    for block, _ in _block_names(insert, mixed):
        targets.update({f"{block}_{b}": (block, b) for b in BRANCHES})
    return targets


def plan_inception(
    width: float = 1.0,
    widen: Mapping[str, int] | None = None,
    insert: Sequence[str] | str | None = None,
    last_layer: str | None = None,
) -> Plan:
    """Validate the edits and compute every layer's input/output channels.

    Edits compose in a fixed order: blocks are inserted first (copying the
    width-scaled, *unwidened* branch widths of the layer they follow), then
    ``widen`` adds channels to any stem layer or branch, inserted ones included;
    a negative value removes channels (pruning), leaving at least one.
    ``last_layer`` truncates the network after that mixed layer (small inputs
    need fewer stages: at 64 px, mixed4b already sees a 4x4 map).
    """
    width = _check_width(width)
    mixed = _mixed(last_layer)
    inserts = _check_insert(insert, mixed)
    targets = _targets(inserts, mixed)
    extra = _check_widen(widen, targets)

    channels: dict[str, int] = {}
    stem = []
    prev = 3
    for name, base in STEM:
        out = _edited(name, scale(base, width), extra)
        stem.append((name, prev, out))
        channels[name] = prev = out

    table = dict(MIXED)
    names = _block_names(inserts, mixed)
    blocks = []
    for i, (block, row) in enumerate(names):
        widths = {b: _edited(f"{block}_{b}", scale(w, width), extra) for b, w in zip(BRANCHES, table[row])}
        last_of_chain = i + 1 == len(names) or names[i + 1][1] != row
        pool = POOL_AFTER.get(row) if last_of_chain and i + 1 < len(names) else None
        plan = BlockPlan(block, prev, widths, pool)
        blocks.append(plan)
        channels[block] = prev = plan.out_channels
        channels.update({f"{block}_{b}": widths[b] for b in BRANCHES})
    return Plan(tuple(stem), tuple(blocks), channels)
