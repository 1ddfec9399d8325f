"""Model x probe at 224 px: which default probes finish (ok), are skipped by the probing budget or fail, and
their wall and CPU seconds, per architecture at random init.

Why: `probe_scaling.py` times each probe alone on one model; this runs what a user gets from
`harness-probe model=... image_size=224`: the composed `conf/probe.yaml` (default probes, the default
`probing` settings: 512 probe images, `budget_s` 60 per round, `probe_timeout_s` 120 per probe, the model's
default layers), through `harness.probe.probe(cfg)` and the runner, with its budget and time limits.

Each model runs in a fresh worker process (`--worker`). Per probe: the runner's status and wall seconds
(`record.json`; the first probe, activations, pays the shared activation capture) and the process's CPU
seconds (`time.process_time`, all threads) around `probe.run`; on a machine shared with other jobs CPU
seconds vary less than wall seconds. The curves probe's random-init census cache (`HARNESS_CACHE_DIR`) is a
fresh temp folder unless `--cache-dir` is given: cold by default; run twice with the same `--cache-dir` for
warm numbers.

Usage: python benchmarks/probes_224.py [--models inception_v1 resnet18 ...] [--size 224] [--threads 2]
       [--cache-dir DIR] [--extra ablation] [--set probing.budget_s=null ...] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's harness, also in the worker processes

from harness.models.families import FAMILIES  # noqa: E402  (after the sys.path line above)

MODELS: dict[str, list[str]] = {name: list(overrides) for name, overrides in FAMILIES.items()}  # -> overrides
DEFAULT_MODELS = ["inception_v1", "resnet18", "inception_v1_tiny", "mobilenet_v3_small"]


def measure(name: str, size: int, extra: list[str], out_dir: Path, settings: list[str] = ()) -> dict[str, Any]:
    """One `harness-probe` run of `name` at `size` px; per probe status, wall and CPU seconds."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    import harness.probe as probe_cli
    from harness.facts.conf_dir import CONF_DIR
    from harness.run.records import RunRecord

    defaults = [n for n in OmegaConf.load(Path(CONF_DIR) / "probes" / "default.yaml").defaults if n != "_self_"]
    probes = [*defaults, *[p for p in extra if p not in defaults]]
    overrides = [*MODELS[name], f"image_size={size}", f"probes=[{','.join(probes)}]", *settings]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("probe", return_hydra_config=True, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)

    cpu: dict[str, float] = {}
    build = probe_cli.build_probes

    def timed_probes(c):  # CPU seconds around each probe's run; the runner keeps its own wall seconds
        built = build(c)
        for key, p in built.items():
            run = p.run

            def wrapped(ctx, run=run, key=key):
                start = time.process_time()
                try:
                    return run(ctx)
                finally:
                    cpu[key] = time.process_time() - start

            p.run = wrapped
        return built

    probe_cli.build_probes = timed_probes
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        probe_cli.probe(cfg)
    finally:
        probe_cli.build_probes = build
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    record = RunRecord.load(out_dir)
    rows = {}
    for key, entry in record["probes"].items():
        status = "failed" if entry.get("error") else "skipped" if entry.get("skipped") else "ok"
        rows[key] = {"status": status, "seconds": float(entry.get("seconds") or 0.0), "cpu_seconds": cpu.get(key),
                     "why": entry.get("error") or entry.get("skipped")}  # fmt: skip
    return {
        "model": name,
        "image_size": size,
        "overrides": overrides,
        "layers": record["config"]["probing"].get("layers"),
        "budget_s": cfg.probing.budget_s,
        "probe_timeout_s": cfg.probing.probe_timeout_s,
        "probe_set_size": cfg.probing.probe_set_size,
        "probes": rows,
        "probe_round_seconds": sum(r["seconds"] for r in rows.values()),
        "run_seconds": total,
        "run_cpu_seconds": total_cpu,
        "curves_info": {k: record["probes"].get("curves", {}).get("info", {}).get(k) for k in ("crop", "random_init")},
    }


def _worker(spec_path: str, out_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    with tempfile.TemporaryDirectory(prefix="bench_probes_224_run_") as run_dir:
        result = measure(spec["model"], spec["image_size"], spec["extra"], Path(run_dir), spec["settings"])
    result["threads"] = torch.get_num_threads()
    Path(out_path).write_text(json.dumps(result, default=str))


def run(models: list[str], size: int, threads: int | None, cache_dir: str | None, extra: list[str],
        settings: list[str] = ()) -> dict:  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_probes_224_") as tmp:
        env = {**os.environ, "HARNESS_CACHE_DIR": cache_dir or str(Path(tmp) / "cache"), "WANDB_MODE": "disabled"}
        for name in models:
            spec_file, out_file = Path(tmp) / f"{name}.json", Path(tmp) / f"{name}.out.json"
            spec = {"model": name, "image_size": size, "threads": threads, "extra": extra, "settings": list(settings)}
            spec_file.write_text(json.dumps(spec))
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file), str(out_file)]
            code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
            if code == 0 and out_file.exists():
                results.append(json.loads(out_file.read_text()))
            else:
                results.append({"model": name, "image_size": size, "error": f"worker exited with {code}"})
            print_row(results[-1])
    return {"image_size": size, "cache": "given" if cache_dir else "cold (fresh temp folder)", "models": results}


def print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['model']}: {r['error']}", file=sys.stderr, flush=True)
        return
    cells = ", ".join(f"{k} {v['status']} {v['seconds']:.1f} s/{(v['cpu_seconds'] or 0):.1f} cpu"
                      for k, v in r["probes"].items())  # fmt: skip
    print(f"{r['model']} {r['image_size']} px: {cells}; round {r['probe_round_seconds']:.1f} s", file=sys.stderr)


def print_table(result: dict) -> None:
    """Markdown: one row per model, one column per probe, `ok 12.3 s (20.1 cpu)`."""
    rows = [r for r in result["models"] if "probes" in r]
    names = list(dict.fromkeys(k for r in rows for k in r["probes"]))
    print(f"| model ({result['image_size']} px) | " + " | ".join(names) + " | round s (budget) |")
    print("|---" * (len(names) + 2) + "|")
    for r in result["models"]:
        if "probes" not in r:
            print(f"| {r['model']} | " + " | ".join(["worker failed"] * len(names)) + " | |")
            continue
        cells = []
        for n in names:
            p = r["probes"].get(n)
            if p is None:
                cells.append("-")
            elif p["status"] == "skipped":  # past the budget, or nothing to measure (lineage without widen edits)
                cells.append("skipped (budget)" if "budget" in (p["why"] or "") else "n/a")
            else:
                cells.append(f"{p['status']} {p['seconds']:.0f} s ({(p['cpu_seconds'] or 0):.0f} cpu)")
        print(f"| {r['model']} | " + " | ".join(cells) + f" | {r['probe_round_seconds']:.0f} ({r['budget_s']}) |")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(MODELS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--cache-dir", default=None, help="HARNESS_CACHE_DIR for the workers (default: a fresh one)")
    parser.add_argument("--extra", nargs="*", default=[], help="probes to add to the default set, e.g. ablation")
    parser.add_argument("--set", nargs="*", default=[], dest="settings",
                        help="more overrides, e.g. probing.budget_s=null probing.probe_timeout_s=null (each probe's "
                             "own seconds, none skipped)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/probes_224.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.models, args.size, args.threads, args.cache_dir, args.extra, args.settings)
    result["total_seconds"] = time.perf_counter() - started
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
