"""The device program is type-checked against micropython-esp32-stubs (the current release,
pinned in requirements-stubs.txt and installed by `make setup` into .build/mpstubs), the
library's public API through its type comments: a call the ESP32's machine / network /
ntptime / esp32 modules do not have fails here. (The library itself: test_static.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / ".build" / "mpstubs"


def mypy(*files: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    # The project's mypy settings (pyproject.toml: the stubs as typeshed), lib/ on the path;
    # the library's own errors are test_static.py's, so imports are followed silently.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--cache-dir", str(cache),
         *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, MYPYPATH=str(ROOT / "lib")))


@pytest.fixture(scope="module")
def stubs() -> Path:
    if not STUBS.is_dir():
        pytest.fail("MicroPython stubs missing: run `make setup` (make test does)")
    return STUBS


def test_the_pinned_stubs_are_installed(stubs):
    pins = dict(line.split("==") for line in (ROOT / "requirements-stubs.txt").read_text()
                .splitlines() if "==" in line and not line.startswith("#"))
    for name, version in pins.items():
        dist = name.replace("-", "_") + "-" + version + ".dist-info"
        assert (stubs / dist).is_dir(), f"{name}=={version} not in {stubs}: run `make setup`"
    assert (stubs / "machine.pyi").is_file()
    assert (stubs / "network.pyi").is_file()


def test_firmware_type_checks_against_the_esp32_stubs(stubs, tmp_path):
    proc = mypy(ROOT / "firmware" / "main.py", ROOT / "firmware" / "boot.py",
                cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_call_the_board_does_not_have_fails(stubs, tmp_path):
    bad = tmp_path / "bad_main.py"
    bad.write_text(
        "import machine\nimport network\n\nfrom mqtt_v5 import ConnectOptions\n\n"
        "machine.WDT(timeout_ms=5000)\n"
        "network.WLAN(network.STA_IF).join('ssid')\n"
        "ConnectOptions('t1', keepalive=30)\n")
    proc = mypy(bad, cache=tmp_path / "cache")
    assert proc.returncode == 1
    out = proc.stdout
    assert 'Unexpected keyword argument "timeout_ms" for "WDT"' in out
    assert '"WLAN" has no attribute "join"' in out
    assert 'Unexpected keyword argument "keepalive" for "ConnectOptions"' in out
