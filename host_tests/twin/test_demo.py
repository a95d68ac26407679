"""`make demo`, the README's main job, runs its whole scenario against the twin and exits 0
(twice on the same state directory: the second run resumes a persistent session), with
the device half (tools/iot_twin/demo_device.py) on CPython and on micropython-unix32."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mp_unix
import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("[1] connect", "[3] report state", "update/delta", "desired and reported agree",
         "running job", "SUCCEEDED", "UsageError", "done:")


def run_demo(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=f"{ROOT / 'lib'}:{ROOT / 'tools'}",
                    TWIN_DEMO_DATA=str(data), **env)
    return subprocess.run(
        [sys.executable, "-m", "iot_twin.demo", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_twice(data: Path, *args: str, **env: str) -> str:
    for run in (1, 2):
        proc = run_demo(data, *args, **env)
        assert proc.returncode == 0, f"run {run}:\n{proc.stdout}\n{proc.stderr}"
        out = proc.stdout
        for step in STEPS:
            assert step in out, f"run {run}: {step!r} missing from\n{out}"
        assert "@cloud" not in out
        if run == 1:
            assert "Connected(session_present=False)" in out
    assert "Connected(session_present=True)" in out, "the second run resumes its session"
    return out


def test_demo_scenario_succeeds_and_can_run_again(tmp_path):
    out = check_twice(tmp_path / "twin")
    assert "device runtime: cpython" in out


def test_demo_device_half_on_micropython_unix32(tmp_path):
    binary = mp_unix.binary("unix32")
    if binary is None:
        pytest.skip(mp_unix.why_missing())
    out = check_twice(tmp_path / "twin", "--micropython", str(binary),
                      MICROPYPATH=f"{mp_unix.mpy_tree()}:.frozen")
    assert f"the device runs on MicroPython: {binary}" in out
    assert "device runtime: micropython" in out


def test_demo_fails_with_exit_1_when_the_device_fails(tmp_path):
    """A device half that cannot run (here: MicroPython without the library) makes the
    demo say so and exit 1, not hang or pass."""
    binary = mp_unix.binary("unix32")
    if binary is None:
        pytest.skip(mp_unix.why_missing())
    proc = run_demo(tmp_path / "twin", "--micropython", str(binary),
                    MICROPYPATH=str(tmp_path / "empty"))
    assert proc.returncode == 1
    assert "demo FAILED" in proc.stderr
    assert "ImportError" in proc.stdout + proc.stderr  # MicroPython prints it to stdout
