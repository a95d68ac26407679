"""The README's AWS examples (blocks marked ``<!-- aws-twin -->``) run against the twin,
unchanged but for the endpoint and port, with the thing's files under the names the README
uses: on CPython and on the unix port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mp_unix
import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- aws-twin -->\s*```python\n(.*?)```", re.S)
BLOCKS = BLOCK.findall((ROOT / "README.md").read_text())
THING = "weather-sensor-001"


def prepare(twin, folder: Path, code: str) -> str:
    creds = twin.thing(THING)
    shutil.copy(creds.cert_path, folder / "device.pem.crt")
    shutil.copy(creds.key_path, folder / "private.pem.key")
    shutil.copy(twin.ca, folder / "AmazonRootCA1.pem")
    assert 'ENDPOINT = "your-prefix-ats.iot.your-region.amazonaws.com"' in code
    code = re.sub(r'ENDPOINT = "[^"]*"', 'ENDPOINT = "127.0.0.1"', code)
    assert "aws_client(ENDPOINT, THING, " in code
    port = twin.port("mtls")
    return code.replace("aws_client(ENDPOINT, THING, ",
                        f'aws_client(ENDPOINT, THING, port={port}, server_hostname="localhost", ')


def test_there_are_aws_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
@pytest.mark.parametrize("runtime", ["cpython", "unix32"])
def test_readme_aws_example_runs(twin, tmp_path, index, runtime):
    code = prepare(twin, tmp_path, BLOCKS[index])
    twin.call(twin.twin.add_job, THING, {"operation": "blink", "times": 2})
    if runtime == "cpython":
        env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    else:
        if mp_unix.binary(runtime) is None:
            pytest.skip(mp_unix.why_missing())
        proc = mp_unix.run_script(runtime, code, mpy=True, heapsize="512k", cwd=tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    if "Shadow" in code:
        assert "shadow version 1" in out
    if "JobRunner" in code:
        assert "SUCCEEDED" in out
        assert "blinking 2 times" in out
