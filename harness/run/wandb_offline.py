"""Read back what wandb wrote offline: history rows, summary, config, name, group, tags and axes of a run.

Why hand-written: wandb (0.31) ships no public reader for its `run-<id>.wandb` files and writes no
summary JSON offline, yet tests and users must check what a run logged without a server. The file is
a stream of `wandb_internal_pb2.Record` protobufs in LevelDB log framing: a 7-byte file header,
32 KiB blocks, each chunk = crc32c (4) + length (2, little-endian) + type (1: full/first/middle/last).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER_SIZE = 7
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_record_bytes(path: str | Path) -> Iterator[bytes]:
    """Yield each serialized Record in a .wandb file (checksums are not verified)."""
    data = Path(path).read_bytes()
    pos, pending = HEADER_SIZE, b""
    while pos + CHUNK_HEADER <= len(data):
        block_left = BLOCK_SIZE - pos % BLOCK_SIZE
        if block_left < CHUNK_HEADER:  # trailing block padding
            pos += block_left
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:  # zero padding in a partly written block
            pos += BLOCK_SIZE - pos % BLOCK_SIZE if pos % BLOCK_SIZE else 0
            continue
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload
            pending = b""


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    """What one offline run logged (all segments of a resumed run). Usage: ``read_offline_run(run_dir).summary``"""

    path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    name: str = ""  # the display name
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    run_id: str = ""
    exit_code: int | None = None
    paths: list[Path] = field(default_factory=list)  # every file read, oldest first (a resumed run has several)
    run_ids: list[str] = field(default_factory=list)
    # logged artifacts (a table is one: its JSON and its image cells): name -> {path in artifact: local file}
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    # define_metric: metric name or glob (`train/*`) -> {"step_metric": ..., "summary": ["max", ...]}
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def keys(self) -> set[str]:
        """Every key that appears in any history row or the summary."""
        return set(self.summary).union(*(row.keys() for row in self.history))


def find_wandb_files(run_dir: str | Path) -> list[Path]:
    """Every .wandb file under a run directory, oldest first (or the path itself if it is one).

    A resumed run (`harness-train resume=<run dir>`) continues the same wandb run id in a second
    `offline-run-<YYYYmmdd_HHMMSS>-<id>` folder; those folder names sort in time order.
    """
    run_dir = Path(run_dir)
    if run_dir.suffix == ".wandb":
        return [run_dir]
    files = sorted(run_dir.rglob("*.wandb"), key=lambda p: (p.parent.name, p.name))
    if not files:
        raise FileNotFoundError(f"no .wandb file under {run_dir}")
    return files


def find_wandb_file(run_dir: str | Path) -> Path:
    """The single .wandb file under a run directory (or the path itself if it is one)."""
    files = find_wandb_files(run_dir)
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .wandb file under {run_dir}, found {len(files)}: {files}")
    return files[0]


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse the offline wandb file(s) of a run directory into history, summary and config.

    A resumed run has one file per segment, all of the same run id: they are read in time order as one run
    (history concatenated, later summary/config values win). Files of different run ids are refused.
    """
    paths = find_wandb_files(run_dir)
    out = OfflineRun(path=paths[0], paths=paths)
    for path in paths:
        _read_file(path, out)
    ids = {run_id for run_id in out.run_ids if run_id}
    if len(ids) > 1:
        raise FileNotFoundError(f"the .wandb files under {run_dir} belong to {len(ids)} runs ({', '.join(sorted(ids))})"
                                f"; pass one file")  # fmt: skip
    # Offline runs write no summary file: the last value of each history key is what wandb shows.
    last: dict[str, Any] = {}
    for row in out.history:
        last.update(row)
    out.summary = {**last, **out.summary}
    return out


def _read_file(path: Path, out: OfflineRun) -> None:
    from wandb.proto import wandb_internal_pb2 as pb

    for raw in iter_record_bytes(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                out.summary[_key(i)] = json.loads(i.value_json)
        elif kind == "config":
            for i in rec.config.update:
                out.config[_key(i)] = json.loads(i.value_json)
        elif kind == "run":
            out.group, out.job_type, out.run_id = rec.run.run_group, rec.run.job_type, rec.run.run_id
            out.name = rec.run.display_name
            out.run_ids.append(rec.run.run_id)
            out.tags = list(rec.run.tags)
            for i in rec.run.config.update:
                out.config[_key(i)] = json.loads(i.value_json)
        elif kind == "artifact":
            out.artifacts[rec.artifact.name] = {c.path: c.local_path for c in rec.artifact.manifest.contents}
        elif kind == "metric":
            m = rec.metric
            summary = [f.name for f, v in m.summary.ListFields() if v is True]
            out.metrics[m.name or m.glob_name] = {"step_metric": m.step_metric, "summary": summary}
        elif kind == "exit":
            out.exit_code = rec.exit.exit_code


def read_table(run: OfflineRun, key: str) -> dict[str, Any]:
    """A logged wandb.Table (`{"columns": [...], "data": [[...]]}`) as wandb will upload it: read from the run's
    table artifact, whose rows hold image cells as `{"_type": "image-file", ...}` (the copy under `files/media/`
    names them only). Offline the artifact's files wait in wandb's staging folder until `wandb sync`."""
    wanted = f"{key}.table.json"
    for contents in reversed(list(run.artifacts.values())):  # the last round's table
        if wanted in contents:
            return json.loads(Path(contents[wanted]).read_text())
    raise KeyError(f"no table {key!r} among the run's artifacts")


@dataclass
class KeyCensus:
    """What a run's history charts: scalar keys, and media keys by wandb type (table-file, image-file, histogram)."""

    scalars: set[str]
    media: dict[str, str]  # key -> wandb `_type`

    def count(self, kind: str) -> int:
        return sum(1 for t in self.media.values() if t == kind)


def key_census(run: OfflineRun) -> KeyCensus:
    """Sort a run's history keys into scalars (one chart each) and media (the reader flattens a media value into
    `<key>/_type`, `<key>/path`, ...; wandb's own `_step`, `_runtime`, `_timestamp` are left out)."""
    media: dict[str, str] = {}
    keys: set[str] = set()
    for row in run.history:
        keys.update(row)
        for k, v in row.items():
            if k.endswith("/_type") and isinstance(v, str):
                media[k[: -len("/_type")]] = v
    scalars = {k for k in keys if not k.startswith("_") and not any(k.startswith(f"{m}/") for m in media)}
    return KeyCensus(scalars=scalars - set(media), media=media)
