"""Frozen code is tested code: MicroPython's unix port (32-bit, as ESP32) built by the shared
``build-unix.sh`` with ``boards/unix/manifest.py`` frozen in (the module list every board
manifest freezes, boards/mqtt_v5_manifest.py), cached under .build/unix-frozen/ by a hash of
the library's sources. It runs the portable tests and talks to the suite's Mosquitto with
``lib/`` NOT on MICROPYPATH: every mqtt_v5 module comes out of the binary."""

from __future__ import annotations

from pathlib import Path

import device
import mp_unix
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PORTABLE = sorted((ROOT / "host_tests" / "portable").glob("test_*.py"))
SCRIPTS = HERE / "mp_scripts"
# MICROPYPATH for these runs: the runner and our scripts, never lib/.
NO_LIB = [ROOT / "host_tests" / "mp_scripts", SCRIPTS]

pytestmark = pytest.mark.micropython

# Portable tests that fail on the frozen build only (they pass with lib/ as .py or .mpy),
# each a bug found here: asserted to still fail, so that a fix shows up as a failure here
# telling to drop the entry.
KNOWN_FROZEN_FAILURES: dict = {
    # (file, test): why. Empty: properties' _WHERE table (an int of 2**15 or more in a
    # constant tuple is a long int once frozen, and '& where' on it allocated) is a bytes
    # constant now, which fixed both entries this had.
}


@pytest.fixture(scope="session")
def frozen_mp() -> Path:
    if not (device.shared_micropython() / "build-unix.sh").is_file():
        pytest.skip(mp_unix.why_missing())
    return device.frozen_unix_binary()


def test_mqtt_v5_comes_from_the_binary(frozen_mp, tmp_path):
    proc = mp_unix.run_script(
        frozen_mp,
        "import sys, mqtt_v5, mqtt_v5.client, mqtt_v5.codec\n"
        "try:\n import mqtt_v5._cpython_stream\n cp = True\nexcept ImportError:\n cp = False\n"
        "print(mqtt_v5.client.__file__, mqtt_v5.codec.__version__, cp, sys.path)\n",
        path=NO_LIB, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    file, version, cp, _ = proc.stdout.split(" ", 3)
    # A frozen module's __file__ is its name in the manifest (no folder); from lib/ it
    # would be the absolute path of the .py file.
    assert file == "mqtt_v5/client.py"
    assert version == device.library_version()
    assert cp == "False"  # the CPython-only module is not frozen
    assert str(ROOT / "lib") not in proc.stdout


@pytest.mark.parametrize("path", PORTABLE, ids=[p.name for p in PORTABLE])
def test_portable_file_on_frozen_build(path, frozen_mp):
    proc = mp_unix.run_script(
        frozen_mp, ROOT / "host_tests" / "mp_scripts" / "run_portable.py",
        args=[path.as_posix()], path=NO_LIB, heapsize="4m", timeout=300)
    report = mp_unix.last_json(proc)
    known = {name for (file, name) in KNOWN_FROZEN_FAILURES if file == path.name}
    failed = [t for t in report["tests"] if not t["ok"] and t["name"] not in known]
    details = "\n".join(f"--- {t['name']} ---\n{t['output']}" for t in failed)
    assert not failed, f"{len(failed)} of {len(report['tests'])} failed frozen:\n{details}"
    fixed = [t["name"] for t in report["tests"] if t["ok"] and t["name"] in known]
    assert not fixed, f"now passing frozen, drop from KNOWN_FROZEN_FAILURES: {fixed}"
    assert report["passed"] > 0
    assert proc.returncode == 0, proc.stderr


@pytest.mark.broker
@pytest.mark.parametrize("listener", ["plain", "mtls"])
def test_frozen_client_round_trip_with_mosquitto(listener, frozen_mp, mosquitto, pki):
    args = [mosquitto.host, mosquitto.ports[listener]]
    if listener == "mtls":  # the unix port's ssl loads DER only
        args += [pki.ca_der, pki.client_cert_der, pki.client_key_der]
    proc = mp_unix.run_script(frozen_mp, SCRIPTS / "frozen_roundtrip.py", args=args,
                              path=NO_LIB, heapsize="256k", timeout=60)
    report = mp_unix.last_json(proc)
    assert sorted(report["got"]) == [["frozen/t", "one"], ["frozen/t", "zero"]]
    assert report["client_file"] == "mqtt_v5/client.py"
    assert proc.returncode == 0, proc.stderr


@pytest.mark.broker
def test_frozen_everyday_path_loads_no_cold_module(frozen_mp, mosquitto, pki):
    """As host_tests/test_unix_lazy.py, frozen: the everyday path loads no cold module,
    and the cold paths work from the modules they load out of the binary."""
    from test_unix_lazy import check_lazy_report, lazy_report

    check_lazy_report(lazy_report(frozen_mp, mosquitto, pki, path=NO_LIB))
