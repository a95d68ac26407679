"""The README's examples marked ``<!-- runnable -->`` run, unchanged but for the broker
address, against the real Mosquitto the suite starts: documentation that cannot rot. Each
runs on CPython and on MicroPython's 32-bit unix port (the device stand-in: real sockets),
with lib/ loaded as .py and as the mip package's .mpy (whose internal names are renamed), so
an example that only one runtime or one install accepts fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mp_unix
import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- runnable -->\s*```python\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_the_readme_has_runnable_examples():
    assert len(runnable_blocks()) >= 5


def _cases():
    for index in range(len(runnable_blocks())):
        yield pytest.param(index, "cpython", id=f"{index}-cpython")
        yield pytest.param(index, "unix32", id=f"{index}-unix32")
        # the mip package's .mpy, whose internal names are renamed (tools/mpy_names.py): the
        # documented API the examples use is all there
        yield pytest.param(index, "unix32-mpy", id=f"{index}-unix32-mpy")


@pytest.mark.parametrize(("index", "runtime"), list(_cases()))
def test_readme_example_runs(index, runtime, mosquitto):
    code = runnable_blocks()[index]
    assert "localhost:1883" in code, "a runnable example names mqtt://localhost:1883"
    code = code.replace("localhost:1883", f"{mosquitto.host}:{mosquitto.plain_port}")
    if runtime == "cpython":
        env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
    else:
        mpy = runtime.endswith("-mpy")
        port = runtime[:-4] if mpy else runtime
        if mp_unix.binary(port) is None:
            pytest.skip(mp_unix.why_missing())
        proc = mp_unix.run_script(port, code, timeout=60, mpy=mpy)
    assert proc.returncode == 0, f"example {index} failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), "every example prints what it did"
