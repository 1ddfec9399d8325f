"""Probe scaling: seconds and peak memory of each probe vs layer width and input size.

Why: probes run on the tiny model at 64 px during training, but researchers also probe wider models and
Lucid's full InceptionV1 at 224 px; this shows which probe stops being cheap first, how fast each grows
(log-log slope of time vs channels and vs pixels), and whether a probe round on the full InceptionV1 at
224 px fits in a minute.

What is measured, per configuration (model width x input size), in a fresh worker process:
- Random-init models (no training; probe costs do not depend on what was learnt), the world probe set
  (`ProbeSet.from_world`, concept masks included), the four curve layers `conv2d2 mixed3a mixed3b mixed4a`.
- `capture`: the shared forward pass that caches those layers' activations (`ctx.activations()`); in a
  training round the first probe pays it. Each probe's seconds exclude it (the cache is warm).
- Probes in the runner's order, built from `conf/probes/<name>.yaml` with `hydra.utils.instantiate`;
  each later probe sees the earlier results (`ctx.results`), as in `run_probes`.
- Two deviations from a plain round, so that every probe does its real work on an untrained model:
  lineage runs with the last 8 units of mixed3b declared widen-added (`ctx.widen`, model unchanged) and
  ablation gets a custom group of 8 mixed3b units (random init has few curve detectors, its usual groups).
- Peak memory: the kernel's resident-set high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`
  just before the probe) minus the resident set just before it (after `gc` + `malloc_trim`): the extra
  RSS the probe needed on top of the model, probe set and shared activation cache.

Usage: python benchmarks/probe_scaling.py [--quick] [--threads 1] [--out benchmarks/results/probe_scaling.json]
       python benchmarks/probe_scaling.py --full-twice [--threads 2]   # only the full InceptionV1 at 224 px, cold
       then warm: two rounds in one worker with one fresh HARNESS_CACHE_DIR (the cached random-init census and CKA
       reference Grams are what "warm" reuses)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's harness, also in the worker processes

LAYERS = ["conv2d2", "mixed3a", "mixed3b", "mixed4a"]
LINEAGE_WIDEN = {"mixed3b": 8}  # lineage only: the last 8 units of mixed3b count as added
ABLATION_UNITS = [f"mixed3b:{i}" for i in range(8)]
TARGET_PROBE_S, TARGET_CKA_S = 60.0, 1.0

# Full: the probes' default configs; probe set 128 images on the grid, the default 512 on the full model.
# Quick: a smoke test (25-45 s on the shared 2-core machine) whose numbers mean little: three grid points (the
# fewest that fit both exponents), tiny probe sets, cheap settings, the "full" model at 48 px.
SIZES: dict[str, dict[str, Any]] = {
    "full": {"grid": [(w, s) for w in (0.25, 0.5, 1.0) for s in (64, 128, 224)], "probe_set_size": 128,
             "full_image_size": 224, "full_probe_set_size": 512, "settings": {}, "cka_repeats": 3,
             "one_worker": False, "threads": None},
    "quick": {"grid": [(0.25, 48), (0.5, 48), (0.25, 64)], "probe_set_size": 8,
              "full_image_size": 48, "full_probe_set_size": 8,
              "settings": {"featvis": {"steps": 2}, "ablation": {"random_draws": 1},
                           "curves": {"orientations": 36, "radii": [0.1, 0.2, 0.35], "random_init": False}},
              "cka_repeats": 1, "one_worker": True, "threads": 1},
}  # fmt: skip


# --- memory -------------------------------------------------------------------------------------------


def _status_kb(field: str) -> float:
    """A `/proc/self/status` field in kB (VmRSS, VmHWM); NaN where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return math.nan


class PeakRSS:
    """Extra resident memory (MB) at the peak of a block, over the resident set at its start.

    Primary: reset the kernel's high-water mark (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0) and read
    VmHWM after. Fallback: sample VmRSS every 2 ms in a thread (torch releases the GIL in its kernels).
    """

    def __enter__(self) -> PeakRSS:
        gc.collect()
        try:  # give freed heap back to the kernel, so the baseline is what is alive
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.start = _status_kb("VmRSS")
        self.peak_kb, self._stop, self._thread = math.nan, threading.Event(), None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM"
        except OSError:
            self.method = "sampled VmRSS"
            self.peak_kb = self.start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak_kb = _status_kb("VmHWM")
        self.mb = max(0.0, self.peak_kb - self.start) / 1024.0


# --- one configuration (runs in a worker process) ----------------------------------------------------


def probe_names() -> list[str]:
    """The default probe set (conf/probes/default.yaml) plus ablation."""
    from omegaconf import OmegaConf

    names = [n for n in OmegaConf.load(ROOT / "conf" / "probes" / "default.yaml").defaults if n != "_self_"]
    return [*names, "ablation"]


def build_probes(settings: dict[str, dict[str, Any]]) -> dict:
    """Name -> probe from conf/probes/<name>.yaml, with `settings[name]` merged in, in the runner's order."""
    import hydra
    from omegaconf import OmegaConf

    probes = {}
    for name in probe_names():
        cfg = OmegaConf.load(ROOT / "conf" / "probes" / f"{name}.yaml")[name]
        cfg = OmegaConf.merge(cfg, settings.get(name, {}))
        if name == "ablation":
            cfg.units = ABLATION_UNITS
        probes[name] = hydra.utils.instantiate(cfg)
    return dict(sorted(probes.items(), key=lambda item: item[1].order))  # stable, as run_probes


def build_model(spec: dict[str, Any], num_classes: int, seed: int):
    """The tiny model's config at `width`, or the full InceptionV1 (conf/model/inception_v1.yaml), seeded."""
    import hydra
    import torch
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{spec['model']}.yaml")
    cfg.width, cfg.num_classes = float(spec["width"]), num_classes
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return hydra.utils.instantiate(cfg).eval()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds and peak extra MB of the capture and of each probe for one (model, width, size, n)."""
    import torch

    from harness.data.world import World
    from harness.models import layers as layer_channels
    from harness.probes.base import ProbeContext
    from harness.probes.probe_set import ProbeSet

    t0 = time.perf_counter()
    probe_set = ProbeSet.from_world(World(image_size=spec["image_size"]), n=spec["probe_set_size"], seed=1234)
    n_classes = len(probe_set.classes)
    model = build_model(spec, n_classes, seed=0)
    ctx = ProbeContext(model, list(LAYERS), probe_set, reference=build_model(spec, n_classes, seed=10_000),
                       make_model=lambda: build_model(spec, n_classes, seed=1), seed=0, batch_size=128)
    probes = build_probes(spec["settings"])
    with torch.no_grad():  # untimed warm-up: thread pool, oneDNN kernels
        model(probe_set.images[:2])
    channels = layer_channels(model)
    out: dict[str, Any] = {**spec, "threads": torch.get_num_threads(),
                           "channels": sum(channels[name] for name in LAYERS),
                           "layer_channels": {name: channels[name] for name in LAYERS},
                           "pixels": spec["image_size"] ** 2, "setup_seconds": time.perf_counter() - t0,
                           "seconds": {}, "cpu_seconds": {}, "peak_mb": {}, "rss_before_mb": {}, "work": {},
                           "errors": {}}  # fmt: skip
    steps = [("capture", lambda: ctx.activations())]
    steps += [(name, lambda p=probe: p.run(ctx)) for name, probe in probes.items()]
    for name, step in steps:
        ctx.widen = LINEAGE_WIDEN if name == "lineage" else {}
        with PeakRSS() as mem:
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                result = step()
            except Exception as err:  # one broken probe must not cost the others their numbers
                out["errors"][name], result = f"{type(err).__name__}: {err}", None
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        ctx.widen = {}
        label = f"{spec['model']} w{spec['width']:g} {spec['image_size']}px n={spec['probe_set_size']}"
        print(f"{label} {name}: {seconds:.2f} s ({cpu:.1f} CPU s), +{mem.mb:.0f} MB", file=sys.stderr, flush=True)
        out["seconds"][name] = seconds if name not in out["errors"] else math.nan
        out["cpu_seconds"][name] = cpu  # all threads of the process: on a loaded machine, steadier than wall
        out["peak_mb"][name] = mem.mb
        out["rss_before_mb"][name] = mem.start / 1024.0
        if name != "capture" and result is not None:
            ctx.results[name] = result
            if work := _work(name, result):
                out["work"][name] = work
    out["memory_method"] = mem.method
    return out


def _work(name: str, result: Any) -> dict[str, int]:
    """What a probe's cost depends on besides model and sizes: random init has a few curve detectors, which
    add ablation groups (1 + random_draws forward passes each) and featvis units."""
    if name == "ablation":
        return {"forward_passes": 1 + sum(int(row["draws"]) for row in result.tables.get("groups", []))}
    if name == "featvis":
        return {"units": len(result.tables.get("units", []))}
    if name == "curves":
        return {"detectors": int(sum(v for k, v in result.scalars.items() if k.endswith("/detectors")))}
    return {}


def _worker(specs_path: str, out_path: str) -> None:
    import torch

    specs = json.loads(Path(specs_path).read_text())
    if specs and specs[0].get("threads"):  # see --threads
        torch.set_num_threads(specs[0]["threads"])
    Path(out_path).write_text(json.dumps([measure(spec) for spec in specs]))


def run_workers(specs: list[dict[str, Any]], one_worker: bool, timeout_s: float | None = None) -> list[dict]:
    """Each group of specs in a fresh `python probe_scaling.py --worker` process; a failed worker -> errors."""
    groups = [specs] if one_worker else [[spec] for spec in specs]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_probe_scaling_") as tmp:
        for i, group in enumerate(groups):
            spec_file, out_file = Path(tmp) / f"specs{i}.json", Path(tmp) / f"out{i}.json"
            spec_file.write_text(json.dumps(group))
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file), str(out_file)]
            # stderr (one progress line per probe, tracebacks) goes straight to ours
            try:
                code = subprocess.run(cmd, stdout=subprocess.DEVNULL, timeout=timeout_s).returncode
            except subprocess.TimeoutExpired:
                code = f"a timeout ({timeout_s} s)"
            if code == 0 and out_file.exists():
                results += json.loads(out_file.read_text())
                continue
            why = f"worker exited with {code} (-9: killed, e.g. for memory); its stderr is above"
            results += [{**spec, "seconds": {}, "peak_mb": {}, "errors": {"worker": why}} for spec in group]
    return results


# --- analysis -----------------------------------------------------------------------------------------


def exponents(grid: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Per probe: least-squares fit of log t = a + b log(channels) + c log(pixels) over the grid -> b, c.

    Points with no positive, finite time are left out; fewer than 3 points (or no spread) give NaN.
    """
    out = {}
    for name in names:
        rows = [(r.get("channels", 0), r.get("pixels", 0), r["seconds"].get(name, math.nan)) for r in grid]
        rows = [(c, p, t) for c, p, t in rows if c > 0 and p > 0 and math.isfinite(t) and t > 0]
        fit = {"channels": math.nan, "pixels": math.nan, "points": len(rows)}
        if len(rows) >= 3:
            a = np.array([[1.0, math.log(c), math.log(p)] for c, p, _ in rows])
            if np.linalg.matrix_rank(a) == 3:
                coef = np.linalg.lstsq(a, np.log([t for _, _, t in rows]), rcond=None)[0]
                fit.update(channels=float(coef[1]), pixels=float(coef[2]))
        out[name] = fit
    return out


def cka_benchmark(n: int, d: int, repeats: int, threads: int | None = None) -> dict[str, Any]:
    """Seconds of `harness.probes.cka.linear_cka` on two random float32 [n, d] matrices (median of repeats)."""
    import torch

    from harness.probes.cka import linear_cka

    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, d, generator=gen), torch.rand(n, d, generator=gen)
    saved, times = torch.get_num_threads(), []
    torch.set_num_threads(threads or saved)
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            value = linear_cka(x, y)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(saved)
    return {"seconds": statistics.median(times), "repeats": times, "value": value, "n": n, "d": d,
            "threads": threads or saved}


def probe_scaling_benchmark(quick: bool, threads: int | None = None) -> dict[str, Any]:
    """The whole study: grid, exponents, the full InceptionV1 and the CKA target; JSON-safe.

    `threads`: torch threads in the workers and for the CKA timing (None: the size's setting, i.e. torch's
    default in full mode, 1 in quick mode).
    """
    size = {**SIZES["quick" if quick else "full"]}
    if threads:
        size["threads"] = int(threads)
    started = time.perf_counter()
    names = ["capture", *probe_names()]
    common = {"settings": size["settings"], "threads": size["threads"]}
    specs = [{"model": "inception_v1_tiny", "width": w, "image_size": s, "probe_set_size": size["probe_set_size"],
              **common} for w, s in size["grid"]]
    full_spec = {"model": "inception_v1", "width": 1.0, "image_size": size["full_image_size"],
                 "probe_set_size": size["full_probe_set_size"], **common}  # fmt: skip
    *grid, full = run_workers([*specs, full_spec], size["one_worker"], timeout_s=300 if quick else None)
    cka = cka_benchmark(4096, 1024, size["cka_repeats"], size["threads"])
    full_s = {name: full["seconds"].get(name, math.nan) for name in names}
    slowest = max(full_s, key=lambda k: full_s[k] if math.isfinite(full_s[k]) else math.inf)
    return {
        "mode": "quick" if quick else "full",
        "sizes": size,
        "layers": LAYERS,
        "probes": names,
        "grid": grid,
        "exponents": exponents(grid, names),
        "full_inception": full,
        "full_inception_224_seconds": full_s,
        "full_inception_224_peak_mb": {name: full["peak_mb"].get(name, math.nan) for name in names},
        "probe_full224_max_seconds": full_s[slowest],
        "probe_full224_slowest": slowest,
        "cka_4096x1024_seconds": cka["seconds"],
        "cka": cka,
        "targets": {
            "probe_full224_under_60s": {k: bool(v < TARGET_PROBE_S) for k, v in full_s.items()},
            "cka_4096x1024_under_1s": bool(cka["seconds"] < TARGET_CKA_S),
        },
        "errors": {f"{r['model']}/w{r['width']}/{r['image_size']}px/{k}": v
                   for r in [*grid, full] for k, v in r["errors"].items()},
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    grid, names = result["grid"], result["probes"]
    table = Table(title=f"probe seconds vs width x input size ({result['mode']}; random init, "
                        f"{grid[0]['probe_set_size']} probe images, layers {' '.join(result['layers'])})")
    table.add_column("probe")
    for r in grid:
        table.add_column(f"w{r['width']:g} {r['image_size']}px", justify="right")
    table.add_column("exp C", justify="right")
    table.add_column("exp px", justify="right")
    for name in names:
        fit = result["exponents"][name]
        table.add_row(name, *(f"{r['seconds'].get(name, math.nan):.3f}" for r in grid),
                      f"{fit['channels']:.2f}", f"{fit['pixels']:.2f}")
    console.print(table)
    full = result["full_inception"]
    table = Table(title=f"full InceptionV1 at {full['image_size']} px, {full['probe_set_size']} probe images "
                        f"(target < {TARGET_PROBE_S:g} s each)")
    for col in ("probe", "seconds", "peak extra MB", "target"):
        table.add_column(col, justify="left" if col == "probe" else "right")
    for name in names:
        seconds = result["full_inception_224_seconds"][name]
        ok = result["targets"]["probe_full224_under_60s"][name]
        table.add_row(name, f"{seconds:.2f}", f"{result['full_inception_224_peak_mb'][name]:.0f}",
                      "pass" if ok else "FAIL")
    console.print(table)
    cka = result["cka"]
    verdict = "pass" if result["targets"]["cka_4096x1024_under_1s"] else "FAIL"
    console.print(f"linear_cka on {cka['n']} x {cka['d']}: {cka['seconds']:.3f} s (target < {TARGET_CKA_S:g} s: "
                  f"{verdict}); total {result['total_seconds']:.0f} s")
    for key, why in result["errors"].items():
        console.print(f"[red]error[/red] {key}: {why}")


def full_twice(threads: int | None, out: Path) -> None:
    """The full spec twice in one worker process with one fresh HARNESS_CACHE_DIR: cold then warm seconds."""
    size = SIZES["full"]
    spec = {"model": "inception_v1", "width": 1.0, "image_size": size["full_image_size"],
            "probe_set_size": size["full_probe_set_size"], "settings": size["settings"],
            "threads": threads}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="probe_scaling_cache_") as cache:
        os.environ["HARNESS_CACHE_DIR"] = cache
        results = run_workers([spec, spec], one_worker=True)
    for label, r in zip(("cold", "warm"), results):
        cells = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items())
        print(f"{label}: {cells}; work {r.get('work')}; errors {r.get('errors') or 'none'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cold": results[0], "warm": results[1]}, indent=2, default=str) + "\n")
    print(f"wrote {out}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (25-45 s); numbers mean little")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/probe_scaling.json"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's in full mode, 1 in quick mode); 1 on a busy shared "
                             "machine, where 2 threads wait for each other on every small op")
    parser.add_argument("--full-twice", action="store_true",
                        help="only the full InceptionV1 at 224 px, twice in one worker, one fresh cache: cold, warm")
    args = parser.parse_args()
    if args.full_twice:
        full_twice(args.threads, args.out)
        return
    result = probe_scaling_benchmark(args.quick, args.threads)
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
