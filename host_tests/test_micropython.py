"""Run the portable test files under real MicroPython, and compile the library with mpy-cross.

Every host_tests/portable/test_*.py is a plain-assert module that pytest collects directly
(CPython) and that this file runs again under MicroPython's WebAssembly port through
`node tools/mp_run.mjs --json` (one node process per file).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mp_unix
import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
MP_RUN = ROOT / "tools" / "mp_run.mjs"
PORTABLE = sorted((ROOT / "host_tests" / "portable").glob("test_*.py"))
LIB_FILES = sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)
MPY_ARCHES = ["host", "xtensawin"]  # xtensawin = ESP32


@pytest.mark.micropython
@pytest.mark.parametrize("path", PORTABLE, ids=[p.name for p in PORTABLE])
def test_portable_file_under_micropython(path):
    node = shutil.which("node")
    assert node, "node is not installed"
    proc = subprocess.run(
        [node, str(MP_RUN), "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail(
            f"mp_run gave no JSON report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    failed = [t for t in report["tests"] if not t["ok"]]
    details = "\n".join(f"--- {t['name']} ---\n{t['output']}" for t in failed)
    assert not failed, (
        f"{len(failed)} of {len(report['tests'])} failed under MicroPython:\n{details}"
    )
    assert report["passed"] > 0, "no test_* function found"
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("arch", MPY_ARCHES)
@pytest.mark.parametrize("path", LIB_FILES, ids=[p.relative_to(LIB).as_posix() for p in LIB_FILES])
def test_mpy_cross_compiles(path, arch, tmp_path):
    rel = path.relative_to(LIB).as_posix()  # the source name a device would record
    march = [] if arch == "host" else [f"-march={arch}"]
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", *march, "-o", str(tmp_path / "out.mpy"), rel],
        cwd=LIB,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"mpy-cross {arch} {rel}:\n{proc.stdout}{proc.stderr}"
    assert (tmp_path / "out.mpy").stat().st_size > 0


@pytest.mark.micropython
@pytest.mark.parametrize("mpy", [False, True], ids=["py", "mpy"])
@pytest.mark.parametrize("path", PORTABLE, ids=[p.name for p in PORTABLE])
def test_portable_file_under_unix_port(path, mpy, mp_unix_port):
    """The same portable files on the unix port (32- and 64-bit), lib/ as .py and as .mpy."""
    proc = mp_unix.run_script(
        mp_unix_port,
        ROOT / "host_tests" / "mp_scripts" / "run_portable.py",
        args=[path.as_posix()],
        mpy=mpy,
        heapsize="4m",
        timeout=300,
    )
    report = mp_unix.last_json(proc)
    failed = [t for t in report["tests"] if not t["ok"]]
    details = "\n".join(f"--- {t['name']} ---\n{t['output']}" for t in failed)
    total = len(report["tests"])
    assert not failed, f"{len(failed)} of {total} failed on {mp_unix_port}:\n{details}"
    assert report["passed"] > 0, "no test_* function found"
    assert proc.returncode == 0, proc.stderr
