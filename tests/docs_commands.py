"""The documented commands, read from the markdown, and a runner that executes them in one process.

A fenced code block preceded by a marker runs in `tests/test_docs.py`:

    <!-- docs-test: run; skip: pip, pytest (why); set: key=value key=value -->

- `run`: every command line of the block runs (`a && b` is two commands; a trailing `# comment` is dropped).
- `skip: w1, w2 (why)`: commands whose first word is one of these are not run; the reason stays in the markdown.
- `set: ...`: overrides that replace the command's own value of the same key, or are added (a sweep made small).

Every command also gets the tiny sizes of SMALL (for keys it does not set itself), and runs in a scratch folder
where `outputs/<date>/<time>` and `multirun/<date>/<time>` mean the newest run and sweep made so far.

Why one process: a fresh interpreter pays ~5 s of imports (torch, Lightning, Hydra) per command; the runner pays
it once and calls each console script's entry point (the installed package's metadata) with its argv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->\s*\n```[a-z]*\n(.*?)```", re.S)

# Test sizes per command, added where the command does not set the key. hydra.*.dir: one folder per command,
# so two runs started within one second do not share `outputs/<date>/<time>`.
SMALL: dict[str, list[str]] = {
    "harness-train": ["data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=32",
                      "trainer.max_epochs=1", "probes=none", "logger=none", "trainer.enable_progress_bar=false",
                      "hydra.run.dir=outputs/docs/{n}", "hydra.sweep.dir=multirun/docs/{n}"],  # fmt: skip
    "harness-probe": ["probing.probe_set_size=32", "logger=none", "hydra.run.dir=outputs/docs/{n}"],
}
PLACEHOLDERS = {"outputs/<date>/<time>": "outputs/*/*", "multirun/<date>/<time>": "multirun/*/*"}


@dataclass
class Command:
    where: str  # file:line of the block
    argv: list[str]
    sets: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


def _options(spec: str) -> dict[str, str]:
    out = {}
    for part in re.sub(r"\(.*?\)", "", spec, flags=re.S).split(";"):  # reasons in brackets go first
        name, _, value = part.strip().partition(":")
        out[name.strip()] = value.strip()
    return out


def _lines(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def marked_commands(path: Path) -> list[Command]:
    """Every command of every marked block in `path`, in order (skipped ones left out)."""
    text = path.read_text()
    commands = []
    for match in MARKER.finditer(text):
        opts = _options(match.group(1))
        if "run" not in opts:
            continue
        skip = {w.strip() for w in opts.get("skip", "").split(",") if w.strip()}
        sets = opts.get("set", "").split()
        line = text[: match.start(2)].count("\n") + 1
        for cmd_line in _lines(match.group(2)):
            for part in cmd_line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv and argv[0] not in skip:
                    commands.append(Command(f"{path.relative_to(ROOT)}:{line}", argv, sets))
    return commands


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def small_argv(cmd: Command, n: int) -> list[str]:
    """The command with its `set:` overrides applied and the tiny sizes added (placeholders kept)."""
    args = list(cmd.argv[1:])
    for over in cmd.sets:
        keys = [i for i, a in enumerate(args) if "=" in a and _key(a) == _key(over)]
        if keys:
            args[keys[0]] = over
        else:
            args.append(over)
    small = [s.format(n=n) for s in SMALL.get(cmd.argv[0], [])]
    args += [s for s in small if _key(s) not in {_key(a) for a in args if "=" in a}]
    return [cmd.argv[0], *args]


def _resolve(arg: str, where: Path) -> str:
    for placeholder, pattern in PLACEHOLDERS.items():
        if placeholder in arg:
            found = sorted(where.glob(pattern), key=lambda p: p.stat().st_mtime)
            arg = arg.replace(placeholder, str(found[-1].relative_to(where)) if found else placeholder)
    return arg


def _entry_point(name: str):
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="console_scripts") if ep.name == name]
    return ep.load()


def run_one(argv: list[str]) -> int:
    """Run one command in this process like its console script; returns its exit code."""
    import runpy

    saved = sys.argv
    try:
        if argv[0] == "python" and argv[1] == "-m":
            sys.argv = [argv[2], *argv[3:]]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        elif argv[0] == "python":
            sys.argv = argv[1:]
            runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
        else:
            sys.argv = argv
            code = _entry_point(argv[0])()  # console scripts exit with what main returns, when it is an int
            return code if isinstance(code, int) else 0
        return 0
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved


def main(plan_file: str, out_file: str) -> None:
    """Run the plan's commands in order in the current folder; write [{argv, rc, seconds, error}] as JSON."""
    plan = json.loads(Path(plan_file).read_text())
    here = Path.cwd()
    os.environ["HARNESS_ROOT"] = str(here)
    results = []
    for argv in plan:
        argv = [_resolve(a, here) for a in argv]
        started = time.perf_counter()
        try:
            rc, error = run_one(argv), ""
        except BaseException:  # noqa: BLE001 - reported per command by the test
            rc, error = 1, traceback.format_exc()[-3000:]
        results.append({"argv": argv, "rc": rc, "seconds": round(time.perf_counter() - started, 2), "error": error})
        Path(out_file).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
