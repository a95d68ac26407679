"""tools/device.py (the Makefile's firmware, flash, deploy and certs targets): what it
generates (the .mpy tree, DER certificates, config.json, the esptool and mpremote command
lines) and how it fails without a board or a toolchain. The command lines are fed to the
pinned esptool and mpremote, which must get as far as opening the (missing) serial port:
so the arguments parse."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import device
import mp_unix
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twin._server_util import running_twin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOOL = ROOT / "tools" / "device.py"
NO_PORT = "/dev/mqtt-v5-no-such-port"


def tool(*args: str, env: dict[str, str] | None = None, unset=()) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    for k in unset:
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          env=e, cwd=ROOT, timeout=120)


def make(*args: str, env: dict[str, str] | None = None, unset=()) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    for k in (*unset, "MAKEFLAGS", "MFLAGS"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run(["make", "--no-print-directory", *args], capture_output=True,
                          text=True, env=e, cwd=ROOT, timeout=300)


def dry_lines(proc: subprocess.CompletedProcess) -> list[list[str]]:
    import shlex

    return [shlex.split(ln) for ln in proc.stdout.splitlines()
            if ln.startswith(sys.executable)]


# --- boards / firmware --------------------------------------------------------------------


def test_boards_lists_chip_offset_and_arch():
    proc = tool("boards")
    assert proc.returncode == 0, proc.stderr
    rows = {ln.split()[0]: ln.split()[1:4] for ln in proc.stdout.splitlines()}
    assert rows["ESP32_GENERIC"] == ["esp32", "0x1000", "xtensawin"]
    assert rows["ESP32_GENERIC_SPIRAM"] == ["esp32", "0x1000", "xtensawin"]
    assert rows["ESP32_GENERIC_S3"] == ["esp32s3", "0x0", "xtensawin"]


def test_unknown_board_is_named():
    proc = tool("flash", "ESP32_NOPE", "--port", NO_PORT)
    assert proc.returncode == 2
    assert "unknown board 'ESP32_NOPE'" in proc.stderr
    assert "ESP32_GENERIC_S3" in proc.stderr


def test_make_firmware_without_toolchain_says_what_to_install():
    proc = make("firmware", "BOARD=ESP32_GENERIC", unset=("MICROPY_DIR", "IDF_PATH"))
    assert proc.returncode != 0
    err = proc.stderr
    assert "cannot build firmware: MICROPY_DIR is not set" in err
    assert "export MICROPY_DIR=/path/to/micropython" in err
    assert "ESP-IDF" in err
    assert "export.sh" in err
    assert "make flash BOARD=ESP32_GENERIC PORT=/dev/ttyUSB0 FIRMWARE=" in err


def test_firmware_needs_esp_idf_exported(tmp_path):
    mp = tmp_path / "micropython"
    (mp / "ports" / "esp32").mkdir(parents=True)
    (mp / "ports" / "esp32" / "Makefile").write_text("")
    proc = tool("firmware", "ESP32_GENERIC", env={"MICROPY_DIR": str(mp)}, unset=("IDF_PATH",))
    assert proc.returncode == 2
    assert "IDF_PATH is not set" in proc.stderr
    idf = tmp_path / "esp-idf"
    (idf / "tools").mkdir(parents=True)
    (idf / "tools" / "idf.py").write_text("")
    proc = tool("firmware", "ESP32_GENERIC",
                env={"MICROPY_DIR": str(mp), "IDF_PATH": str(idf), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "idf.py is not on PATH" in proc.stderr


@pytest.mark.parametrize(("board", "mp_board", "variant"), [
    ("ESP32_GENERIC", "ESP32_GENERIC", None),
    ("ESP32_GENERIC_SPIRAM", "ESP32_GENERIC", "SPIRAM"),
    ("ESP32_GENERIC_S3", "ESP32_GENERIC_S3", None),
])
def test_firmware_commands_are_micropythons_own(board, mp_board, variant, tmp_path):
    """With a toolchain in place: mpy-cross, submodules, then the port's make with the
    board (and variant) and FROZEN_MANIFEST pointing at boards/<board>/manifest.py."""
    mp = tmp_path / "micropython"
    (mp / "ports" / "esp32").mkdir(parents=True)
    (mp / "ports" / "esp32" / "Makefile").write_text("")
    idf = tmp_path / "esp-idf"
    (idf / "tools").mkdir(parents=True)
    (idf / "tools" / "idf.py").write_text("")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "idf.py").write_text("#!/bin/sh\n")
    (fake_bin / "idf.py").chmod(0o755)
    proc = tool("firmware", board, "--dry-run", env={
        "MICROPY_DIR": str(mp), "IDF_PATH": str(idf),
        "PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    cmds = [ln.split() for ln in proc.stdout.splitlines()]
    port = str(mp.resolve() / "ports" / "esp32")
    args = [f"BOARD={mp_board}"] + ([f"BOARD_VARIANT={variant}"] if variant else [])
    args.append(f"FROZEN_MANIFEST={ROOT / 'boards' / board / 'manifest.py'}")
    assert cmds == [
        ["make", "-C", str(mp.resolve() / "mpy-cross")],
        ["make", "-C", port, *args, "submodules"],
        ["make", "-C", port, *args],
    ]
    expected_build = "build-" + mp_board + (f"-{variant}" if variant else "")
    assert device.firmware_build_dir(board, mp).name == expected_build


# --- flash --------------------------------------------------------------------------------


@pytest.mark.parametrize(("board", "chip", "offset"), [
    ("ESP32_GENERIC", "esp32", "0x1000"),
    ("ESP32_GENERIC_SPIRAM", "esp32", "0x1000"),
    ("ESP32_GENERIC_S3", "esp32s3", "0x0"),
])
def test_flash_erases_then_writes_at_the_chips_offset(board, chip, offset, tmp_path):
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\xe9" + bytes(255))
    proc = tool("flash", board, "--port", NO_PORT, "--firmware", str(image), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    erase, write = dry_lines(proc)
    esptool = [sys.executable, "-m", "esptool", "--chip", chip, "--port", NO_PORT]
    assert erase == [*esptool, "erase-flash"]
    assert write == [*esptool, "--baud", "460800", "write-flash", "-z", offset, str(image)]
    # The pinned esptool takes these arguments: it gets as far as opening the port.
    for cmd in (erase, write):
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0
        assert f"Could not open {NO_PORT}" in run.stdout + run.stderr, run.stdout + run.stderr


def test_make_flash_fails_clearly_without_board_or_image(tmp_path):
    proc = make("flash", "BOARD=ESP32_GENERIC", f"PORT={NO_PORT}",
                f"FIRMWARE={tmp_path / 'none.bin'}")
    assert proc.returncode != 0
    assert "no firmware image at" in proc.stderr
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\xe9")
    proc = make("flash", "BOARD=ESP32_GENERIC", f"PORT={NO_PORT}", f"FIRMWARE={image}")
    assert proc.returncode != 0
    assert f"serial port {NO_PORT} not found" in proc.stderr
    proc = make("flash", "BOARD=ESP32_GENERIC", f"FIRMWARE={image}")
    assert "no serial port: pass PORT=/dev/ttyUSB0" in proc.stderr


# --- deploy -------------------------------------------------------------------------------


def test_deploy_compiles_the_library_for_the_boards_arch_and_copies_it(tmp_path):
    proc = tool("deploy", "--port", NO_PORT, "--board", "ESP32_GENERIC_S3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    tree = ROOT / ".build" / "deploy" / "xtensawin"
    mpys = {p.relative_to(tree).as_posix() for p in tree.rglob("*.mpy")}
    want = {"lib/" + p.relative_to(ROOT / "lib").with_suffix(".mpy").as_posix()
            for p in device.library_sources()}
    assert mpys == want
    assert "lib/mqtt_v5/_cpython_stream.mpy" not in mpys
    assert "lib/mqtt_v5/_compat_cpython.mpy" not in mpys
    for p in tree.rglob("*.mpy"):
        assert p.read_bytes()[:2] == b"M\x06"  # .mpy version 6
    (cmd,) = dry_lines(proc)
    assert cmd[:5] == [sys.executable, "-m", "mpremote", "connect", NO_PORT]
    assert cmd[5] == "exec"
    assert "_rm('lib/mqtt_v5')" in cmd[6]
    rest = " ".join(cmd[7:])
    assert f"+ cp -r {tree / 'lib'} :" in rest
    assert f"+ cp {ROOT / 'firmware' / 'boot.py'} :boot.py" in rest
    assert f"+ cp {ROOT / 'firmware' / 'main.py'} :main.py" in rest
    # mpremote takes this command line: it gets as far as opening the port.
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert f"failed to access {NO_PORT}" in run.stdout + run.stderr


def test_deployed_tree_runs_on_micropython(tmp_path):
    """The tree `make deploy` copies (xtensawin .mpy, bytecode only) loads and passes the
    smoke tests on the unix port, with nothing else of the library on the path."""
    exe = mp_unix.binary("unix32")
    if exe is None:
        pytest.skip(mp_unix.why_missing())
    tree = device.compile_library("xtensawin", tmp_path / "tree")
    proc = mp_unix.run_script(  # (mpy=True: the tests as the .mpy package names things)
        exe, ROOT / "host_tests" / "mp_scripts" / "run_portable.py",
        args=[(ROOT / "host_tests" / "portable" / "test_smoke.py").as_posix()],
        path=[tree / "lib", ROOT / "host_tests" / "mp_scripts"], mpy=True)
    report = mp_unix.last_json(proc)
    assert report["failed"] == 0, report
    assert report["passed"] > 0


def test_deploy_removes_stale_sources_on_the_device(tmp_path):
    """MicroPython imports name.py before name.mpy: the script deploy runs first removes the
    .py files a mip install or a copy of lib/ left in :lib/mqtt_v5, and nothing else."""
    exe = mp_unix.binary("unix32")
    if exe is None:
        pytest.skip(mp_unix.why_missing())
    pkg = tmp_path / "lib" / "mqtt_v5"
    (pkg / "aws").mkdir(parents=True)
    for f in ("client.py", "client.mpy", "aws/shadow.py", "aws/shadow.mpy", "notes.txt"):
        (pkg / f).write_text("")
    (tmp_path / "main.py").write_text("")
    (cmd,) = device.deploy_commands(NO_PORT, tmp_path / "tree")
    script = cmd[cmd.index("exec") + 1]
    proc = subprocess.run([str(exe), "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["lib/mqtt_v5/aws/shadow.mpy", "lib/mqtt_v5/client.mpy",
                    "lib/mqtt_v5/notes.txt", "main.py"]


def test_deploy_without_port_fails_clearly():
    proc = tool("deploy")
    assert proc.returncode == 2
    assert "no serial port" in proc.stderr
    proc = tool("deploy", "--port", NO_PORT)
    assert proc.returncode == 2
    assert f"serial port {NO_PORT} not found" in proc.stderr


# --- certs --------------------------------------------------------------------------------


@pytest.fixture
def twin_data(tmp_path):
    with running_twin(tmp_path) as tw:
        tw.thing("t1")
        yield tw.twin.data_dir


def test_certs_converts_to_der_and_writes_config(twin_data, tmp_path):
    env = {"TWIN_DATA": str(twin_data), "WIFI_SSID": "lab-net", "WIFI_PASSWORD": "s3cret"}
    proc = tool("certs", "--thing", "t1", "--endpoint", "localhost", "--port", NO_PORT,
                "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    out = ROOT / ".build" / "certs" / "t1"
    cert = x509.load_der_x509_certificate((out / "cert.der").read_bytes())
    pem = x509.load_pem_x509_certificate((twin_data / "things/t1/cert.pem").read_bytes())
    assert cert == pem
    ca = x509.load_der_x509_certificate((out / "ca.der").read_bytes())
    assert ca == x509.load_pem_x509_certificate((twin_data / "ca.pem").read_bytes())
    key = serialization.load_der_private_key((out / "key.der").read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg == {"thing": "t1", "endpoint": "localhost", "port": 8883, "ca": "ca.der",
                   "cert": "cert.der", "key": "key.der", "ssid": "lab-net",
                   "wifi_password": "s3cret"}
    # The Wi-Fi password is in a file only its owner reads, in a folder git ignores.
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "key.der").stat().st_mode) == 0o600
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "config.json")], cwd=ROOT)
    assert ignored.returncode == 0
    (cmd,) = dry_lines(proc)
    assert " ".join(cmd[3:]) == (
        f"connect {NO_PORT} cp {out / 'cert.der'} :cert.der + cp {out / 'key.der'} :key.der"
        f" + cp {out / 'ca.der'} :ca.der + cp {out / 'config.json'} :config.json")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert f"failed to access {NO_PORT}" in run.stdout + run.stderr


def test_certs_without_wifi_in_the_environment_leaves_it_out(twin_data):
    proc = tool("certs", "--thing", "t1", "--endpoint", "localhost", "--port", NO_PORT,
                "--dry-run", env={"TWIN_DATA": str(twin_data)},
                unset=("WIFI_SSID", "WIFI_PASSWORD"))
    assert proc.returncode == 0, proc.stderr
    assert "WIFI_SSID is not set" in proc.stderr
    cfg = json.loads((ROOT / ".build/certs/t1/config.json").read_text())
    assert "ssid" not in cfg
    assert "wifi_password" not in cfg


def test_make_certs_fails_clearly(twin_data):
    proc = make("certs", "THING=ghost", f"PORT={NO_PORT}", "ENDPOINT=localhost",
                env={"TWIN_DATA": str(twin_data)})
    assert proc.returncode != 0
    assert "no cert file at" in proc.stderr
    assert "make twin-thing THING=ghost" in proc.stderr
    proc = make("certs", "THING=t1", f"PORT={NO_PORT}", env={"TWIN_DATA": str(twin_data)},
                unset=("ENDPOINT",))
    assert proc.returncode != 0
    assert "no endpoint: pass ENDPOINT=" in proc.stderr
