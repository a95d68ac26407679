"""`make demo`, the README's main job, runs its whole scenario against the twin and exits 0
(twice on the same state directory: the second run resumes a persistent session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(data: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'lib'}:{ROOT / 'tools'}", TWIN_DEMO_DATA=str(data))
    return subprocess.run(
        [sys.executable, "-m", "iot_twin.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_scenario_succeeds_and_can_run_again(tmp_path):
    for run in (1, 2):
        proc = run_demo(tmp_path / "twin")
        assert proc.returncode == 0, f"run {run}:\n{proc.stdout}\n{proc.stderr}"
        out = proc.stdout
        for step in (
            "[1] connect",
            "[3] report state",
            "update/delta",
            "SUCCEEDED",
            "UsageError",
            "done:",
        ):
            assert step in out, f"run {run}: {step!r} missing from\n{out}"
    assert "Connected(session_present=True)" in out, "the second run resumes its session"
