"""The mqtt_v5.aws import-heap budgets (issue 9) on micropython-unix32, from .mpy: the heap
kept after ``gc.collect()`` is deterministic (no timing in it), so the budgets are checked
here as well as in `make bench`, and `make bench` exits non-zero when one is exceeded."""

from __future__ import annotations

import sys
from pathlib import Path

import mp_unix
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import bench  # noqa: E402
import bench_aws  # noqa: E402


def test_aws_import_heap_within_budget_on_unix32():
    if mp_unix.binary("unix32") is None:
        pytest.skip(mp_unix.why_missing())
    heap = bench_aws.measure("unix32")
    assert heap["aws preset (mqtt_v5.aws.connect)"] > 0
    assert heap["shadow"] > 0
    checked = bench_aws.budgets(heap)
    assert set(checked) == {"preset + shadow", "jobs", "provisioning"}
    assert checked["preset + shadow"]["budget"] == 10 * 1024
    assert checked["jobs"]["budget"] == checked["provisioning"]["budget"] == 8 * 1024
    assert all(v["ok"] for v in checked.values()), checked


def test_bench_exits_non_zero_when_a_budget_is_exceeded(tmp_path, monkeypatch, capsys):
    heap = {"aws preset (mqtt_v5.aws.connect)": 6000, "shadow": 4000, "jobs": 9000,
            "provisioning": 100}

    def fake(results):
        results["budget"] = bench_aws.budgets(heap)

    monkeypatch.setattr(bench, "ROOT", tmp_path)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "bench" / "results.json")
    monkeypatch.setattr(bench, "SECTIONS", {"aws": ("fake:fn", "budgets")})
    monkeypatch.setattr(bench, "_load", lambda spec: fake)
    assert bench.main(["--only", "aws"]) == 1
    assert "over budget: aws: jobs: 9000 > 8192" in capsys.readouterr().out
    heap["jobs"] = 8192
    assert bench.main(["--only", "aws"]) == 0
    heap["shadow"] = 4241  # 10241 > 10240
    assert bench.main(["--only", "aws"]) == 1
