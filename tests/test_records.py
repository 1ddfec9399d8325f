import json
import math

import torch

from harness.run.records import RunRecord


def test_record_is_json_with_plain_values(tmp_path) -> None:
    rec = RunRecord(tmp_path, variant="v", seed=1)
    rec.update(metrics={"a": torch.tensor(0.25), "b": math.nan}, shape=(1, 2))
    path = rec.save()
    data = json.loads(path.read_text())
    assert data["metrics"] == {"a": 0.25, "b": None}  # JSON has no NaN
    assert data["shape"] == [1, 2] and data["status"] == "running"
    assert RunRecord.load(tmp_path) == data
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
