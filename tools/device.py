"""Device tasks: freeze check, firmware image, flash, deploy, certificates.

    python tools/device.py boards
    python tools/device.py freeze   BOARD            # MicroPython's makemanifest.py, no ESP-IDF
    python tools/device.py firmware BOARD            # needs MICROPY_DIR and ESP-IDF (IDF_PATH)
    python tools/device.py flash    BOARD --port /dev/ttyUSB0 [--firmware FILE]
    python tools/device.py deploy   --port /dev/ttyUSB0 [--board BOARD]
    python tools/device.py certs    --port /dev/ttyUSB0 --thing NAME --endpoint HOST

Every command that talks to a board takes ``--dry-run``: it prepares what it would copy or
write (the .mpy tree, the DER certificates, config.json, under .build/) and prints the exact
``esptool`` / ``mpremote`` command lines instead of running them. The Makefile's
``firmware``, ``flash``, ``deploy`` and ``certs`` targets call this script.

A board is a folder ``boards/<BOARD>/`` with ``manifest.py`` (what is frozen) and
``board.json``: MicroPython's board and variant, the chip (esptool ``--chip``), the flash
offset of the image and the ``mpy-cross`` architecture. Errors a user can fix (no toolchain,
no board, no certificate) end the command with a message saying what to do, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "boards"
LIB = ROOT / "lib"
FIRMWARE_SRC = ROOT / "firmware"
BUILD = ROOT / ".build"
MP_VERSION = "1.28.0"
MP_TARBALL = f"micropython-{MP_VERSION}-src.tar.gz"
FLASH_BAUD = 460800
# The files of a device's program (firmware/), copied as source: MicroPython runs boot.py,
# then main.py, from the filesystem's root.
PROGRAM = ("boot.py", "main.py")


class DeviceError(Exception):
    """A problem the user can fix; the message says how."""


# --- boards -------------------------------------------------------------------------------


def boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS.glob("*/board.json"))


def library_version() -> str:
    """``__version__`` of lib/mqtt_v5/__init__.py (what boards/mqtt_v5_manifest.py tags the
    frozen modules with)."""
    from gen_package_json import version

    return version()


def board_info(name: str) -> dict:
    path = BOARDS / name / "board.json"
    if not path.is_file():
        raise DeviceError(f"unknown board {name!r}; boards here: {', '.join(boards())}")
    info = json.loads(path.read_text())
    info["name"] = name
    info["manifest"] = str(BOARDS / name / "manifest.py")
    info["offset"] = int(info["flash_offset"], 16)
    return info


# --- MicroPython's source (the shared 1.28 tarball) and its manifest tooling --------------


def shared_micropython() -> Path:
    """The shared MicroPython folder: ``$MICROPYTHON_UNIX``'s parent when that names the bin/
    folder, else ``../shared/micropython`` beside the checkout."""
    env = os.environ.get("MICROPYTHON_UNIX")
    if env:
        p = Path(env)
        return (p.parent if p.name == "bin" or not (p / "bin").is_dir() else p).resolve()
    return (ROOT.parent / "shared" / "micropython").resolve()


def unpack_source(tarball: Path | None = None, dest: Path | None = None) -> Path:
    """MicroPython's source tree, unpacked once into ``.build/micropython/`` (cached)."""
    tarball = tarball or shared_micropython() / MP_TARBALL
    dest = dest or BUILD / "micropython"
    src = dest / f"micropython-{MP_VERSION}"
    if (src / ".unpacked").exists():
        return src
    if not tarball.is_file():
        raise DeviceError(f"MicroPython's source archive {tarball} is missing "
                          "(set MICROPYTHON_UNIX to the shared micropython folder)")
    shutil.rmtree(src, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tf:
        try:
            tf.extractall(dest, filter="data")
        except TypeError:  # Python 3.11 before 3.11.4 has no extraction filters
            tf.extractall(dest)  # (our own pinned archive)
    (src / ".unpacked").touch()
    return src


def mpy_cross(src: Path) -> Path:
    """The source tree's own mpy-cross (what a firmware build uses), built once."""
    exe = src / "mpy-cross" / "build" / "mpy-cross"
    if not exe.exists():
        _run(["make", "-s", "-C", str(src / "mpy-cross"), "-j2"], quiet=True)
    return exe


def freeze(board: str, src: Path | None = None, out: Path | None = None,
           manifest: Path | None = None) -> Path:
    """Run MicroPython's ``tools/makemanifest.py`` on ``boards/<board>/manifest.py`` as the
    ESP32 port's build does (ports/esp32 paths, micropython-lib, the board's mpy-cross arch),
    without ESP-IDF. Returns the build folder: ``frozen_content.c`` and ``frozen_mpy/``.
    A missing file, a bad manifest or code mpy-cross rejects fails here. ``manifest``
    replaces the board's own (the port and architecture stay the board's)."""
    info = board_info(board)
    src = src or unpack_source()
    out = out or BUILD / "freeze" / board
    shutil.rmtree(out, ignore_errors=True)
    # mpy-tool reads the firmware's qstr table from here; an empty table (settings only)
    # makes it freeze every qstr the modules use, which is all a check needs.
    genhdr = out / "genhdr"
    genhdr.mkdir(parents=True)
    (genhdr / "qstrdefs.preprocessed.h").write_text(
        "QCFG(BYTES_IN_LEN, (1))\nQCFG(BYTES_IN_HASH, (1))\n")
    port = src / "ports" / "esp32"
    cmd = [
        sys.executable, str(src / "tools" / "makemanifest.py"),
        "-o", str(out / "frozen_content.c"), "-b", str(out),
        f"--mpy-cross-flags=-march={info['mpy_arch']}",
        "-v", f"MPY_DIR={src}", "-v", f"MPY_LIB_DIR={src / 'lib' / 'micropython-lib'}",
        "-v", f"PORT_DIR={port}", "-v", f"BOARD_DIR={port / 'boards' / info['micropython_board']}",
        str(manifest or info["manifest"]),
    ]
    env = dict(os.environ, MICROPY_MPYCROSS=str(mpy_cross(src)))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise DeviceError(f"freezing {board} failed:\n{proc.stdout}{proc.stderr}")
    return out


def frozen_unix_binary(bits: int = 32) -> Path:
    """MicroPython's unix port with ``boards/unix/manifest.py`` frozen in (the same module
    list as the boards), built by the shared ``build-unix.sh`` and cached under
    ``.build/unix-frozen/<key>/`` where the key hashes the library's sources and the
    manifests: about a minute when they changed, nothing otherwise."""
    import hashlib

    script = shared_micropython() / "build-unix.sh"
    if not script.is_file():
        raise DeviceError(f"{script} is missing (set MICROPYTHON_UNIX)")
    manifest = BOARDS / "unix" / "manifest.py"
    h = hashlib.sha256(f"{bits} {MP_VERSION}".encode())
    inputs = [manifest, BOARDS / "mqtt_v5_manifest.py", script,
              *sorted(p for p in (LIB / "mqtt_v5").rglob("*.py") if "__pycache__" not in p.parts)]
    for p in inputs:
        name = p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else p.name
        h.update(name.encode() + b"\0" + p.read_bytes())
    key = h.hexdigest()[:16]
    top = BUILD / "unix-frozen"
    exe = top / key / f"micropython-unix{bits}"
    if exe.exists():
        return exe
    unpack_source()  # build-unix.sh finds it unpacked in its cache folder
    cmd = [str(script), str(exe), str(manifest)] + (["--64"] if bits == 64 else [])
    env = dict(os.environ, MP_BUILD_CACHE=str(BUILD / "micropython"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not exe.exists():
        raise DeviceError(f"building the frozen unix port failed:\n{proc.stdout}{proc.stderr}")
    for old in top.iterdir():  # older keys: sources that no longer exist
        if old.name != key and (old / f"micropython-unix{bits}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return exe


# --- firmware image (the official route: MicroPython source + ESP-IDF) ---------------------


FIRMWARE_HELP = """\
make firmware builds MicroPython's ESP32 port with this board's manifest frozen in. It needs:
  1. MicroPython's source (v{mp} or newer, git checkout with submodules), then
       export MICROPY_DIR=/path/to/micropython
  2. ESP-IDF (v5.5.1 is what MicroPython {mp} recommends; see ports/esp32/README.md), installed
     with its install.sh for esp32,esp32s3 and exported in this shell:
       . /path/to/esp-idf/export.sh        (sets IDF_PATH and puts idf.py on PATH)
Or skip the build: flash a stock MicroPython image with
  make flash BOARD={board} PORT=/dev/ttyUSB0 FIRMWARE=path/to/downloaded.bin
and install the library with `make deploy` or mip (README: "On the device")."""


def firmware_image(board: str) -> Path:
    return BUILD / "firmware" / board / "firmware.bin"


def firmware_commands(board: str, micropy_dir: Path) -> list[list[str]]:
    info = board_info(board)
    port = micropy_dir / "ports" / "esp32"
    args = [f"BOARD={info['micropython_board']}"]
    if info["variant"]:
        args.append(f"BOARD_VARIANT={info['variant']}")
    args.append(f"FROZEN_MANIFEST={info['manifest']}")
    return [
        ["make", "-C", str(micropy_dir / "mpy-cross")],
        ["make", "-C", str(port), *args, "submodules"],
        ["make", "-C", str(port), *args],
    ]


def firmware_build_dir(board: str, micropy_dir: Path) -> Path:
    info = board_info(board)
    name = "build-" + info["micropython_board"]
    if info["variant"]:
        name += "-" + info["variant"]
    return micropy_dir / "ports" / "esp32" / name


def toolchain_problem(env: dict[str, str] | None = None) -> str | None:
    """What is missing for a firmware build, or None."""
    env = dict(os.environ) if env is None else env
    mp = env.get("MICROPY_DIR")
    if not mp:
        return "MICROPY_DIR is not set"
    if not (Path(mp) / "ports" / "esp32" / "Makefile").is_file():
        return f"MICROPY_DIR={mp} holds no ports/esp32/Makefile"
    idf = env.get("IDF_PATH")
    if not idf:
        return "IDF_PATH is not set (ESP-IDF not exported)"
    if not (Path(idf) / "tools" / "idf.py").is_file():
        return f"IDF_PATH={idf} holds no tools/idf.py"
    if shutil.which("idf.py", path=env.get("PATH")) is None:
        return "idf.py is not on PATH (run ESP-IDF's export.sh in this shell)"
    return None


def cmd_firmware(a: argparse.Namespace) -> int:
    board_info(a.board)
    problem = toolchain_problem()
    if problem:
        raise DeviceError(f"cannot build firmware: {problem}.\n"
                          + FIRMWARE_HELP.format(mp=MP_VERSION, board=a.board))
    mp = Path(os.environ["MICROPY_DIR"]).resolve()
    for cmd in firmware_commands(a.board, mp):
        _run(cmd, dry_run=a.dry_run)
    if a.dry_run:
        return 0
    built = firmware_build_dir(a.board, mp) / "firmware.bin"
    out = firmware_image(a.board)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, out)
    print(f"firmware image: {out.relative_to(ROOT)}")
    return 0


# --- flash --------------------------------------------------------------------------------


def esptool() -> list[str]:
    return [sys.executable, "-m", "esptool"]


def flash_commands(board: str, port: str, image: Path, baud: int = FLASH_BAUD) -> list[list[str]]:
    """Erase the chip, then write the image at the chip's offset (MicroPython's board.json
    deploy offset: 0x1000 on ESP32, 0x0 on ESP32-S3)."""
    info = board_info(board)
    base = [*esptool(), "--chip", info["chip"], "--port", port]
    return [
        [*base, "erase-flash"],
        [*base, "--baud", str(baud), "write-flash", "-z", hex(info["offset"]), str(image)],
    ]


def cmd_flash(a: argparse.Namespace) -> int:
    board_info(a.board)
    image = Path(a.firmware) if a.firmware else firmware_image(a.board)
    if not image.is_file():
        raise DeviceError(f"no firmware image at {image}: run `make firmware BOARD={a.board}`, "
                          "or pass FIRMWARE=path/to/a/downloaded/MicroPython.bin")
    _need_port(a.port, a.dry_run)
    for cmd in flash_commands(a.board, a.port, image, a.baud):
        _run(cmd, dry_run=a.dry_run)
    return 0


# --- deploy: the library as .mpy for the board's architecture, and the program -------------


def library_sources() -> list[Path]:
    """lib/mqtt_v5/**/*.py that a device runs (CPython-only modules left out)."""
    from gen_package_json import device_files

    return [LIB / f for f in device_files(tracked_only=False)]


def compile_library(arch: str, out: Path | None = None) -> Path:
    """Compile the library for ``arch`` into ``out/lib/mqtt_v5/...mpy`` the way the mip
    package mpy/ is compiled (tools/gen_package_json.py's mpy-cross flags, -O3), plus
    -march=arch (a fresh tree: nothing stale is ever deployed). Returns ``out``."""
    from gen_package_json import MpyCrossError, mpy_cross

    out = out or BUILD / "deploy" / arch
    shutil.rmtree(out, ignore_errors=True)
    for src in library_sources():
        rel = src.relative_to(LIB).as_posix()
        try:
            mpy_cross(rel, out / "lib" / Path(rel).with_suffix(".mpy"), arch)
        except MpyCrossError as e:
            raise DeviceError(str(e)) from None
    return out


# Removes what a copy of the .py sources (mip install, cp -r lib/mqtt_v5) left on the device:
# MicroPython imports name.py before name.mpy, so a stale .py would shadow the new .mpy.
_CLEAN_PY = ("import os\n"
             "def _rm(d):\n"
             " try: names = os.listdir(d)\n"
             " except OSError: return\n"
             " for n in names:\n"
             "  p = d + '/' + n\n"
             "  if n.endswith('.py'): os.remove(p)\n"
             "  elif '.' not in n: _rm(p)\n"
             "_rm('lib/mqtt_v5')\n")


def mpremote() -> list[str]:
    return [sys.executable, "-m", "mpremote"]


def deploy_commands(port: str, tree: Path, program: bool = True) -> list[list[str]]:
    # One line (exec of the escaped script): the command prints and pastes as one line.
    cmd = [*mpremote(), "connect", port, "exec", f"exec({_CLEAN_PY!r})",
           "+", "cp", "-r", str(tree / "lib"), ":"]
    if program:
        for name in PROGRAM:
            cmd += ["+", "cp", str(FIRMWARE_SRC / name), ":" + name]
    return [cmd]


def cmd_deploy(a: argparse.Namespace) -> int:
    info = board_info(a.board)
    _need_port(a.port, a.dry_run)
    tree = compile_library(info["mpy_arch"])
    n = len(list(tree.rglob("*.mpy")))
    print(f"compiled {n} modules for {info['mpy_arch']} into {tree.relative_to(ROOT)}")
    for cmd in deploy_commands(a.port, tree, program=not a.no_program):
        _run(cmd, dry_run=a.dry_run)
    return 0


# --- certificates and config.json ---------------------------------------------------------


def twin_data() -> Path:
    return Path(os.environ.get("TWIN_DATA") or ROOT / ".twin")


def to_der(pem_or_der: bytes, kind: str) -> bytes:
    """A certificate or private key as DER (what MicroPython's ssl loads; its unix port
    parses nothing else). ``kind`` is "cert" or "key"."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    is_pem = b"-----BEGIN" in pem_or_der
    if kind == "cert":
        cert = (x509.load_pem_x509_certificate if is_pem else x509.load_der_x509_certificate)(
            pem_or_der)
        return cert.public_bytes(serialization.Encoding.DER)
    load = (serialization.load_pem_private_key if is_pem
            else serialization.load_der_private_key)
    try:
        key = load(pem_or_der, password=None)
    except TypeError as e:  # encrypted
        raise DeviceError(
            f"the private key is encrypted ({e}); a device needs it unencrypted") from None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def device_config(thing: str, endpoint: str, port: int = 8883,
                  server_hostname: str | None = None,
                  env: dict[str, str] | None = None) -> dict:
    """config.json for firmware/main.py. Wi-Fi credentials come from the environment
    (WIFI_SSID, WIFI_PASSWORD), never from the repository."""
    env = dict(os.environ) if env is None else env
    cfg = {
        "thing": thing,
        "endpoint": endpoint,
        "port": port,
        "ca": "ca.der",
        "cert": "cert.der",
        "key": "key.der",
    }
    if server_hostname:
        cfg["server_hostname"] = server_hostname
    ssid = env.get("WIFI_SSID")
    if ssid:
        cfg["ssid"] = ssid
        cfg["wifi_password"] = env.get("WIFI_PASSWORD", "")
    return cfg


def prepare_certs(thing: str, endpoint: str, *, cert: Path | None = None,
                  key: Path | None = None, ca: Path | None = None, port: int = 8883,
                  server_hostname: str | None = None, out: Path | None = None,
                  env: dict[str, str] | None = None) -> Path:
    """Write cert.der, key.der, ca.der and config.json into ``out`` (default
    .build/certs/<thing>/) from the given files, by default the local twin's
    ``things/<thing>/{cert,key}.pem`` and ``ca.pem``. Returns ``out``."""
    folder = twin_data() / "things" / thing
    sources = {"cert": cert or folder / "cert.pem", "key": key or folder / "key.pem",
               "ca": ca or twin_data() / "ca.pem"}
    for kind, path in sources.items():
        if not Path(path).is_file():
            raise DeviceError(
                f"no {kind} file at {path}. For the local twin: `make twin-thing THING={thing}` "
                "writes the thing's certificate and key; for AWS IoT pass CERT=, KEY= and CA= "
                "(the certificate and key AWS issued, and AmazonRootCA1.pem)")
    env = dict(os.environ) if env is None else env
    out = out or BUILD / "certs" / thing
    out.mkdir(parents=True, exist_ok=True)
    for kind, path in sources.items():
        der = to_der(Path(path).read_bytes(), "key" if kind == "key" else "cert")
        (out / f"{kind}.der").write_bytes(der)
    (out / "key.der").chmod(0o600)
    cfg = device_config(thing, endpoint, port, server_hostname, env)
    cfg_path = out / "config.json"
    # It may hold the Wi-Fi password: readable by its owner only.
    fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=1)
    return out


# -- the device program on MicroPython's unix port (tests and `make bench`) --------------

STAND_INS = ROOT / "host_tests" / "device" / "stand_ins"
BOOT_SCRIPT = ROOT / "host_tests" / "device" / "mp_scripts" / "device_boot.py"


def firmware_fs(fs: Path, thing: str | None, *, ca: Path, port: int,
                cert: Path | None = None, key: Path | None = None,
                server_hostname: str = "localhost", **config) -> Path:
    """A board's filesystem in ``fs`` for firmware/main.py against a local broker on
    127.0.0.1:``port``: boot.py, main.py, and what ``make certs`` uploads (DER
    certificate, key and CA, config.json with Wi-Fi "lab"), ``config`` added to
    config.json. ``thing`` None: no thing certificate yet (first-boot provisioning)."""
    fs.mkdir(parents=True, exist_ok=True)
    for name in PROGRAM:
        shutil.copy(ROOT / "firmware" / name, fs / name)
    env = {"WIFI_SSID": "lab", "WIFI_PASSWORD": "pw"}
    if thing is not None:
        prepare_certs(thing, "127.0.0.1", cert=cert, key=key, ca=ca, port=port,
                      server_hostname=server_hostname, out=fs, env=env)
        cfg = json.loads((fs / "config.json").read_text())
    else:
        (fs / "ca.der").write_bytes(to_der(Path(ca).read_bytes(), "cert"))
        cfg = device_config("", "127.0.0.1", port, server_hostname, env)
        del cfg["thing"]
    cfg.update(config)
    (fs / "config.json").write_text(json.dumps(cfg))
    return fs


def boot_firmware(exe: Path, fs: Path, *, mpy_tree: Path | None, heap: str = "256k",
                  timeout: float = 60, env: dict[str, str] | None = None,
                  stop_at: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Reset the board: boot.py then main.py, unchanged, on the unix port ``exe`` in the
    board's filesystem ``fs``, with the hardware stand-ins, until main.py ends (deep sleep,
    reset). The library comes from ``mpy_tree`` (.mpy files, as ``make deploy`` copies
    them) or, when None, from ``exe`` (frozen). ``env``: the stand-ins' knobs.
    ``stop_at``: end the run (returncode None) at the first output line holding one of
    these, e.g. "fatal error" instead of waiting out main.py's 10 s before its reset."""
    path = [str(STAND_INS), ".frozen"]
    if mpy_tree is not None:
        path.insert(0, str(mpy_tree))
    e = dict(os.environ, MICROPYPATH=":".join(path), **(env or {}))
    cmd = [str(exe), "-X", f"heapsize={heap}", str(BOOT_SCRIPT)]
    if not stop_at:
        return subprocess.run(cmd, cwd=fs, env=e, capture_output=True, text=True,
                              timeout=timeout)
    import threading

    with subprocess.Popen(cmd, cwd=fs, env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        lines = []
        stopped = False
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if any(s in line for s in stop_at):
                    stopped = True
                    proc.kill()
                    break
        finally:
            timer.cancel()
        rc = proc.wait()
    return subprocess.CompletedProcess(cmd, None if stopped else rc, "".join(lines), "")


def certs_commands(port: str, folder: Path) -> list[list[str]]:
    cmd = [*mpremote(), "connect", port]
    for i, name in enumerate(("cert.der", "key.der", "ca.der", "config.json")):
        cmd += (["+"] if i else []) + ["cp", str(folder / name), ":" + name]
    return [cmd]


def cmd_certs(a: argparse.Namespace) -> int:
    if not a.thing:
        raise DeviceError("no thing: pass THING=<thing name> (the twin's: `make twin-thing "
                          "THING=name` creates one)")
    if not a.endpoint:
        raise DeviceError(
            "no endpoint: pass ENDPOINT=<your AWS IoT data endpoint, the -ats one from "
            "`aws iot describe-endpoint --endpoint-type iot:Data-ATS`> or the address of a "
            "broker (a twin the board can reach: `python -m iot_twin serve --host ADDR "
            "--allow-remote`)")
    if not os.environ.get("WIFI_SSID"):
        print("note: WIFI_SSID is not set: config.json has no Wi-Fi credentials "
              "(set WIFI_SSID and WIFI_PASSWORD in the environment to include them)",
              file=sys.stderr)
    folder = prepare_certs(
        a.thing, a.endpoint, cert=_opt_path(a.cert), key=_opt_path(a.key), ca=_opt_path(a.ca),
        port=a.mqtt_port, server_hostname=a.server_hostname)
    print(f"prepared {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}: "
          "cert.der key.der ca.der config.json")
    _need_port(a.port, a.dry_run)
    for cmd in certs_commands(a.port, folder):
        _run(cmd, dry_run=a.dry_run)
    return 0


# --- helpers ------------------------------------------------------------------------------


def _opt_path(p: str | None) -> Path | None:
    return Path(p) if p else None


def _need_port(port: str | None, dry_run: bool) -> None:
    if not port:
        raise DeviceError("no serial port: pass PORT=/dev/ttyUSB0 (Linux; /dev/ttyACM0 for "
                          "native USB boards such as the S3; see `mpremote connect list`)")
    if not dry_run and not os.path.exists(port):
        raise DeviceError(f"serial port {port} not found: is the board plugged in? "
                          "(`.venv/bin/mpremote connect list` lists the ports)")


def shell_line(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _run(cmd: list[str], *, dry_run: bool = False, quiet: bool = False) -> None:
    if dry_run:
        print(shell_line(cmd))
        return
    if not quiet:
        print("+", shell_line(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=quiet)
    if proc.returncode != 0:
        raise DeviceError(f"command failed (exit {proc.returncode}): {shell_line(cmd)}"
                          + (f"\n{proc.stderr.decode(errors='replace')}" if quiet else ""))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/device.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("boards", help="list the boards (boards/*/board.json)")
    s = sub.add_parser("freeze", help="run makemanifest.py for a board (no ESP-IDF needed)")
    s.add_argument("board")
    s = sub.add_parser("firmware", help="build a firmware image (MICROPY_DIR + ESP-IDF)")
    s.add_argument("board")
    s.add_argument("--dry-run", action="store_true")
    s = sub.add_parser("flash", help="erase the chip and write a firmware image (esptool)")
    s.add_argument("board")
    s.add_argument("--port")
    s.add_argument("--firmware", help="image to write (default .build/firmware/BOARD/)")
    s.add_argument("--baud", type=int, default=FLASH_BAUD)
    s.add_argument("--dry-run", action="store_true")
    s = sub.add_parser("deploy", help="copy the library as .mpy and the program (mpremote)")
    s.add_argument("--port")
    s.add_argument("--board", default="ESP32_GENERIC", help="decides the .mpy architecture")
    s.add_argument("--no-program", action="store_true", help="the library only")
    s.add_argument("--dry-run", action="store_true")
    s = sub.add_parser("certs", help="upload certificate, key, CA (DER) and config.json")
    s.add_argument("--port")
    s.add_argument("--thing", required=True)
    s.add_argument("--endpoint", default=os.environ.get("ENDPOINT"))
    s.add_argument("--mqtt-port", type=int, default=8883)
    s.add_argument("--server-hostname", help="TLS SNI name, if not the endpoint")
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--ca")
    s.add_argument("--dry-run", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.command == "boards":
            for name in boards():
                info = board_info(name)
                print(f"{name:24} {info['chip']:8} {info['flash_offset']:7} "
                      f"{info['mpy_arch']:10} {info['description']}")
            return 0
        if a.command == "freeze":
            out = freeze(a.board)
            n = len(list((out / "frozen_mpy").rglob("*.mpy")))
            print(f"froze {n} modules for {a.board} into {out / 'frozen_content.c'}")
            return 0
        return {"firmware": cmd_firmware, "flash": cmd_flash, "deploy": cmd_deploy,
                "certs": cmd_certs}[a.command](a)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
