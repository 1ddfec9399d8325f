"""The comparison pipeline: records -> runs -> effects -> headline -> files in the output folder.

Why one function: the CLI, tests and notebooks all call `compare(...)`; the CLI only adds argument parsing
and the terminal table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.compare.curves import learning_curves_plot
from harness.compare.family import check_headline_keys, family, family_layers, layer_order, touched_layers
from harness.compare.headline import Headline, make_headline
from harness.compare.load import Run, load_runs, ordered_variants
from harness.compare.paired import PairedEffect, paired_effects, write_paired
from harness.compare.paired import lines as paired_lines
from harness.compare.plots import Plot, make_plots
from harness.compare.replication import Replication, add_replication, split_half
from harness.compare.report import write_report
from harness.compare.stats import ALPHA, Effect, is_result, variant_effects
from harness.compare.tables import write_effects, write_summary
from harness.compare.units import unit_effects
from harness.compare.variants import choose_baseline, variant_labels
from harness.facts.errors import ConfigError
from harness.facts.runs import RECORD_NAME


@dataclass
class Comparison:
    """Everything one comparison produced (also written to `out_dir`).

    Usage: ``c = compare(["multirun/2026-11-22/22-40-44"]); print(c.headline.text); c.effects[variant]``
    """

    runs: list[Run]
    labels: dict[str, str]
    baseline: str
    effects: dict[str, list[Effect]]  # non-baseline variant -> one Effect per metric
    headline: Headline
    plots: list[Plot]
    out_dir: Path
    paired: list[PairedEffect] = field(default_factory=list)  # variant - baseline per shared seed (paired designs)
    skipped_inputs: list[Path] = field(default_factory=list)  # input folders without any record.json
    replication: dict[str, Replication | None] = field(default_factory=dict)  # split-half check per variant
    families: dict[str, set[str]] = field(default_factory=dict)  # variant -> the metrics BH ran over


def default_out(inputs: Sequence[str | Path]) -> Path:
    """`<dir>/compare` for a single multirun directory, else `./compare`."""
    if len(inputs) == 1:
        path = Path(inputs[0])
        if path.is_dir() and not (path / RECORD_NAME).is_file():
            return path / "compare"
    return Path("compare")


def compare(
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    baseline: str | None = None,
    alpha: float = ALPHA,
    headline_keys: Sequence[str] = (),
) -> Comparison:
    """Read every record below `inputs`, compare each variant with the baseline, write all outputs to `out`.

    `headline_keys`: extra metrics (fnmatch patterns) for the headline family; one naming no metric is an error.
    """
    skipped: list[Path] = []
    runs = load_runs(inputs, skipped)
    readable = [r for r in runs if r.status != "unreadable"]
    if not readable:
        raise ConfigError(f"no readable {RECORD_NAME} below {', '.join(map(str, inputs))}: {runs[0].error}")
    labels = variant_labels(ordered_variants(readable))
    labels.setdefault("?", "?")
    base = choose_baseline(readable, labels, baseline)
    finished = [r for r in readable if r.finished]
    base_runs = [r for r in finished if r.variant == base]
    check_headline_keys(headline_keys, [m for r in finished for m in r.metrics if is_result(m)])
    effects: dict[str, list[Effect]] = {}
    families: dict[str, set[str]] = {}
    replication: dict[str, Replication | None] = {}
    for v in ordered_variants(readable):
        if v == base:
            continue
        var_runs = [r for r in finished if r.variant == v]
        metrics = dict.fromkeys(m for r in [*base_runs, *var_runs] for m in r.metrics)
        families[v] = family(metrics, base_runs, var_runs, headline_keys)
        layers = family_layers(touched_layers(base_runs, var_runs), layer_order([*base_runs, *var_runs]))
        effects[v] = variant_effects(base_runs, var_runs, alpha, families[v])
        effects[v] += unit_effects(base_runs, var_runs, layers)
        replication[v] = split_half(base_runs, var_runs, alpha, families[v])
    headline = make_headline(runs, labels, base, effects, alpha, replication)
    add_replication(headline, replication, labels)
    paired = paired_effects(finished, base)
    headline.lines += paired_lines(paired, labels)
    headline.data["paired"] = [{**vars(e), "variant": labels.get(e.variant, e.variant)} for e in paired]

    out_dir = Path(out) if out is not None else default_out(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_summary(runs, labels, out_dir / "summary.csv")
    write_effects(effects, labels, base, out_dir / "effects.csv")
    write_paired(paired, labels, out_dir / "paired.csv")
    (out_dir / "headline.txt").write_text(headline.text)
    (out_dir / "headline.json").write_text(headline.json())
    variants = [base, *effects]
    plots = make_plots(runs, labels, variants, out_dir / "plots")
    plots.append(learning_curves_plot(runs, labels, variants, out_dir / "plots"))
    write_report(out_dir / "report.html", runs, labels, base, effects, headline, plots)
    return Comparison(runs, labels, base, effects, headline, plots, out_dir, paired, skipped, replication, families)
