"""Docs that stay true: links resolve, named config options, keys and code paths exist, marked commands run.

The markdown checked: README.md, docs/**/*.md and benchmarks/README.md. The commands that run are the ones after a
`<!-- docs-test: run ... -->` marker (tests/docs_commands.py says how the marker reads); they run at tiny sizes,
all in one subprocess, so the imports are paid once.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.docs_commands import ROOT, marked_commands, small_argv

PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")])
CONF = ROOT / "conf"
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# `group=value` or `group=[a,b]` where group is a config group (a folder of conf/, or hydra/launcher ...)
OPTION = re.compile(r"(?<![\w.+/~-])([a-z_]+(?:/[a-z_]+)?)=(\[[\w,]*\]|[\w,]+)")
# dotted keys set in an override: `model.widen_init=gradmax`, `probes.curves.min_selectivity=4`
KEY = re.compile(r"(?<![\w.+/~$-])([a-z_]+(?:\.[A-Za-z_]\w*)+)=")
CODE_PATH = re.compile(r"(?<![\w./-])((?:harness|tests|scripts|benchmarks|conf)/[\w/.-]+\.(?:py|yaml))\b")
MODULE = re.compile(r"(?<![\w./-])(harness(?:\.[a-z_]\w*)+)")


def _prose(text: str) -> str:
    """The text without code blocks and code spans (where links live)."""
    return SPAN.sub("", FENCE.sub("", text))


def _code(text: str) -> list[str]:
    """Every fenced block's body and every inline code span, except blocks after `<!-- docs-test: no-check -->`
    (transcripts of bad input, a user's own configs)."""
    text = re.sub(r"<!--\s*docs-test:[^>]*no-check[^>]*-->\s*\n```.*?^```", "", text, flags=re.S | re.M)
    return [m.group(0) for m in FENCE.finditer(text)] + SPAN.findall(FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", FENCE.sub("", page.read_text()), re.M)}


def links() -> list[tuple[Path, str]]:
    return [(page, m.group(1)) for page in PAGES for m in LINK.finditer(_prose(page.read_text()))
            if not re.match(r"[a-z]+:", m.group(1))]  # fmt: skip


def broken_links() -> list[str]:
    broken = []
    for page, target in links():
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{page.relative_to(ROOT)}: {target} (no heading with that anchor)")
    return broken


def test_every_relative_link_resolves() -> None:
    assert len(links()) > 40
    assert broken_links() == []


def test_a_broken_link_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control for the link check: a missing file and a missing anchor are both reported."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](page.md#title) [gone](nope.md) [anchor](page.md#nothing) `[code](x.md)`\n")
    monkeypatch.setattr(sys.modules[__name__], "PAGES", [page])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert broken_links() == ["page.md: nope.md (no such file)",
                              "page.md: page.md#nothing (no heading with that anchor)"]


@cache
def _group_options() -> dict[str, set[str]]:
    """Config group -> its options, as Hydra sees them (conf/ plus the launcher and sweeper plugins)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            groups = [p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"]
            groups += ["hydra/launcher", "hydra/sweeper", "oracle"]
            return {g: set(loader.get_group_options(g)) for g in groups}
    finally:
        GlobalHydra.instance().clear()


def _flat_keys(node, prefix: str) -> set[str]:
    keys = {prefix} if prefix else set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys |= _flat_keys(value, f"{prefix}.{key}" if prefix else str(key))
    return keys


@cache
def _known_keys() -> set[str]:
    """Every key path any config file can set: conf/train.yaml and probe.yaml as they are, a group's files under
    the group's name (conf/probes/curves.yaml's `curves:` under probes), `# @package _global_` files at the top."""
    keys: set[str] = set()
    for path in CONF.rglob("*.yaml"):
        rel = path.relative_to(CONF)
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        is_global = "@package _global_" in path.read_text().split("\n", 1)[0]
        keys |= _flat_keys(data, "" if is_global else ".".join(rel.parts[:-1]))
    return keys


def config_names() -> list[tuple[Path, str, str]]:
    """(page, kind, name) for every group option and every dotted key named in the pages' code."""
    names = []
    for page in PAGES:
        for code in _code(page.read_text()):
            for group, value in OPTION.findall(code):
                if group in _group_options():
                    names += [(page, "option", f"{group}={v}") for v in value.strip("[]").split(",") if v]
            names += [(page, "key", key) for key in KEY.findall(code) if key.split(".")[0] in _top_keys()]
    return names


@cache
def _top_keys() -> set[str]:
    return {k.split(".")[0] for k in _known_keys()} - {"hydra", "defaults"}


def unknown_config_names(names: list[tuple[Path, str, str]]) -> list[str]:
    bad = []
    for page, kind, name in names:
        if kind == "option":
            group, value = name.split("=")
            ok = value in _group_options()[group] or (group == "oracle" and value == "control")
        else:  # a key some config file sets, or one under a group that takes free keys (model.widen, +model.x)
            ok = name in _known_keys() or any(name.startswith(f"{k}.") for k in ("model.widen", "hydra"))
        if not ok:
            bad.append(f"{page.relative_to(ROOT)}: {name}")
    return sorted(set(bad))


def test_every_config_option_and_key_named_in_the_docs_exists() -> None:
    names = config_names()
    assert len({n for _, _, n in names}) > 60
    assert unknown_config_names(names) == []


def test_a_misspelt_config_name_is_found() -> None:
    """Negative control: a wrong option and a wrong key are reported, a right one is not; no-check blocks are out."""
    assert _code("<!-- docs-test: no-check (bad input) -->\n```text\ndata=x\n```\n`data=y`") == ["data=y"]
    page = ROOT / "README.md"
    names = [(page, "option", "data=world_hardd"), (page, "key", "model.widen_int"), (page, "option", "data=world")]
    assert unknown_config_names(names) == ["README.md: data=world_hardd", "README.md: model.widen_int"]


def code_paths() -> list[tuple[Path, str]]:
    """Files (`harness/run/summary.py`) and modules (`harness.facts.runs`) the pages name in their code."""
    out = []
    for page in PAGES:
        for code in _code(page.read_text()):
            out += [(page, p) for p in CODE_PATH.findall(code)] + [(page, m) for m in MODULE.findall(code)]
    return out


def missing_code_paths(paths: list[tuple[Path, str]]) -> list[str]:
    bad = []
    for page, name in paths:
        if "/" in name:
            ok = (ROOT / name).exists()
        else:  # the longest importable module prefix, then attributes
            parts, ok = name.split("."), False
            for cut in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                try:
                    for attr in parts[cut:]:
                        obj = getattr(obj, attr)
                    ok = True
                except AttributeError:
                    pass
                break
        if not ok:
            bad.append(f"{page.relative_to(ROOT)}: {name}")
    return sorted(set(bad))


def test_every_code_path_named_in_the_docs_exists() -> None:
    paths = code_paths()
    assert len(paths) > 50
    assert missing_code_paths(paths) == []


def test_a_moved_module_is_found() -> None:
    """Negative control: a file or module that is not there is reported; an attribute path that is, is not."""
    page = ROOT / "README.md"
    paths = [(page, "harness/no_such_module.py"), (page, "harness.no_such_module.read_offline_run"),
             (page, "harness.models.no_such_function"), (page, "harness.models.load_net")]  # fmt: skip
    assert missing_code_paths(paths) == ["README.md: harness.models.no_such_function",
                                         "README.md: harness.no_such_module.read_offline_run",
                                         "README.md: harness/no_such_module.py"]  # fmt: skip


COMMANDS = [cmd for page in PAGES for cmd in marked_commands(page)]


def test_a_failing_command_is_a_failure() -> None:
    """Negative control for the runner: a documented typo exits 2, as on the command line."""
    from tests.docs_commands import run_one

    assert run_one(["harness-train", "trainer.max_epoch=1"]) == 2


def test_the_readme_commands_are_marked() -> None:
    """Every command line of the README's bash blocks is either run or skipped with a reason in its marker."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"(<!--\s*docs-test:[^>]*-->\s*\n)?```bash\n", readme)
    assert blocks and all(blocks), "a bash block of the README has no docs-test marker"
    assert sum(c.where.startswith("README.md") for c in COMMANDS) >= 7


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    where = tmp_path_factory.mktemp("docs_commands")
    plan = [small_argv(cmd, n) for n, cmd in enumerate(COMMANDS)]
    (where / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "tests.docs_commands", "plan.json", "results.json"], cwd=where,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    results = json.loads((where / "results.json").read_text()) if (where / "results.json").exists() else []
    assert len(results) == len(COMMANDS), proc.stderr[-3000:]
    return results


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[f"{c.where} {c.text[:60]}" for c in COMMANDS])
def test_documented_command_runs(ran: list[dict], index: int) -> None:
    result = ran[index]
    assert result["rc"] == 0, f"{COMMANDS[index].where}: {' '.join(result['argv'])}\n{result['error']}"
