"""The board manifests, proven with MicroPython's own tooling (1.28 source from the shared
folder, unpacked once into .build/micropython/): makemanifest.py resolves each board's
manifest against ports/esp32 (the port's own manifest, micropython-lib, asyncio) and freezes
it with mpy-cross for the board's architecture, as an ESP32 firmware build does, without
ESP-IDF. A broken path or code MicroPython cannot compile fails here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import device
import mp_unix
import pytest

ROOT = Path(__file__).resolve().parents[2]
BOARDS = device.boards()


@pytest.fixture(scope="module")
def mp_src() -> Path:
    tarball = device.shared_micropython() / device.MP_TARBALL
    if not tarball.is_file():
        pytest.skip(mp_unix.why_missing())
    return device.unpack_source(tarball)


def frozen_files(out: Path) -> set[str]:
    return {p.relative_to(out / "frozen_mpy").with_suffix(".py").as_posix()
            for p in (out / "frozen_mpy").rglob("*.mpy")}


def test_the_three_boards_exist():
    assert {"ESP32_GENERIC", "ESP32_GENERIC_S3", "ESP32_GENERIC_SPIRAM"} <= set(BOARDS)


@pytest.mark.parametrize("board", BOARDS)
def test_board_json_agrees_with_micropython(board, mp_src):
    """Chip, flash offset, variant and mpy-cross architecture as MicroPython's ports/esp32
    defines them for that board."""
    info = device.board_info(board)
    port = mp_src / "ports" / "esp32"
    mp_board = port / "boards" / info["micropython_board"]
    theirs = json.loads((mp_board / "board.json").read_text())
    assert info["chip"] == theirs["mcu"]
    assert info["offset"] == int(theirs["deploy_options"]["flash_offset"], 16)
    if info["variant"]:
        assert info["variant"] in theirs["variants"]
        assert (mp_board / f"mpconfigvariant_{info['variant']}.cmake").is_file()
    cmake = (mp_board / "mpconfigboard.cmake").read_text()
    m = re.search(r"set\(IDF_TARGET (\w+)\)", cmake)
    assert (m.group(1) if m else "esp32") == info["chip"]
    # esp32_common.cmake: every Xtensa target (esp32, -S2, -S3) freezes with xtensawin.
    common = (port / "esp32_common.cmake").read_text()
    xtensa = "CONFIG_IDF_TARGET_ARCH_XTENSA)\n    set(MICROPY_CROSS_FLAGS -march=xtensawin)"
    assert xtensa in common
    assert info["chip"] in ("esp32", "esp32s2", "esp32s3")
    assert info["mpy_arch"] == "xtensawin"


@pytest.mark.parametrize("board", BOARDS)
def test_makemanifest_freezes_the_board(board, mp_src, tmp_path):
    out = device.freeze(board, mp_src, tmp_path / "freeze")
    files = frozen_files(out)
    library = {p.relative_to(ROOT / "lib").as_posix() for p in device.library_sources()}
    core = {f for f in library if "/" not in f[len("mqtt_v5/"):]}
    assert core <= files
    assert "mqtt_v5/_cpython_stream.py" not in files
    assert "mqtt_v5/_compat_cpython.py" not in files
    assert ("mqtt_v5/aws/__init__.py" in files) == (ROOT / "lib/mqtt_v5/aws").is_dir()
    assert {f for f in files if f.startswith("mqtt_v5/")} == library
    # What mip installs (lib/package.json) is frozen too.
    installed = [d for d, _ in json.loads((ROOT / "lib/package.json").read_text())["urls"]]
    assert set(installed) <= files
    # ... and the port's own manifest came with it: asyncio, networking, drivers.
    assert {"asyncio/core.py", "_boot.py", "ntptime.py", "umqtt/simple.py"} <= files
    c = (out / "frozen_content.c").read_text()
    assert '"mqtt_v5/client.py' in c
    assert "mp_frozen_mpy_content" in c


def test_generic_manifest_freezes_too(mp_src, tmp_path):
    """boards/manifest.py (for boards without a folder here) freezes the same modules."""
    a = device.freeze("ESP32_GENERIC", mp_src, tmp_path / "a")
    b = device.freeze("ESP32_GENERIC", mp_src, tmp_path / "b", ROOT / "boards" / "manifest.py")
    assert frozen_files(a) == frozen_files(b)


def _fake_repo(tmp_path: Path, with_aws: bool) -> Path:
    """boards/ and lib/mqtt_v5 copied, optionally with an mqtt_v5/aws part."""
    shutil.copytree(ROOT / "boards", tmp_path / "boards")
    shutil.copytree(ROOT / "lib" / "mqtt_v5", tmp_path / "lib" / "mqtt_v5",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if with_aws:
        aws = tmp_path / "lib" / "mqtt_v5" / "aws"
        shutil.rmtree(aws, ignore_errors=True)
        aws.mkdir()
        (aws / "__init__.py").write_text("X = 1\n")
        (aws / "shadow.py").write_text("def topic(thing):\n    return thing\n")
    return tmp_path / "boards"


@pytest.mark.parametrize("aws", [True, False], ids=["aws", "core-only"])
def test_aws_part_is_a_separate_optional_package(aws, mp_src, tmp_path):
    boards = _fake_repo(tmp_path, with_aws=True)
    manifest = boards / "core_only.py"
    manifest.write_text(f'include("$(PORT_DIR)/boards/manifest.py")\n'
                        f'include("mqtt_v5_manifest.py", aws={aws})\n')
    out = device.freeze("ESP32_GENERIC", mp_src, tmp_path / "out", manifest)
    files = frozen_files(out)
    assert "mqtt_v5/client.py" in files
    assert ("mqtt_v5/aws/shadow.py" in files) is aws
    assert ("mqtt_v5/aws/__init__.py" in files) is aws


def test_a_missing_path_fails_the_freeze(mp_src, tmp_path):
    manifest = tmp_path / "manifest.py"
    manifest.write_text('include("$(PORT_DIR)/boards/manifest.py")\n'
                        'package("mqtt_v5", base_path="../no-such-lib")\n')
    with pytest.raises(device.DeviceError, match="freezing ESP32_GENERIC failed"):
        device.freeze("ESP32_GENERIC", mp_src, tmp_path / "out", manifest)


def test_cpython_only_code_fails_the_freeze(mp_src, tmp_path):
    """A module MicroPython cannot compile (here: a `match` statement, CPython 3.10+ only)
    stops the freeze with mpy-cross's error."""
    boards = _fake_repo(tmp_path, with_aws=False)
    (tmp_path / "lib" / "mqtt_v5" / "newer.py").write_text(
        "def f(x):\n    match x:\n        case 1:\n            return 2\n")
    with pytest.raises(device.DeviceError, match=r"mqtt_v5/newer\.py"):
        device.freeze("ESP32_GENERIC", mp_src, tmp_path / "out", boards / "ESP32_GENERIC"
                      / "manifest.py")


def _long_int_constants(src: Path, frozen_mpy: Path) -> list[str]:
    """Int constants of the frozen mqtt_v5 modules that MicroPython's mpy-tool.py turns into
    long-int objects in ROM (outside -0x2000..0x1FFF) although a 32-bit port holds them as
    small ints when the same module is loaded from .py or .mpy."""
    import importlib.util
    import sys

    sys.path.insert(0, str(src / "py"))  # mpy-tool imports makeqstrdata from there
    try:
        spec = importlib.util.spec_from_file_location("mpy_tool", src / "tools" / "mpy-tool.py")
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
    finally:
        sys.path.remove(str(src / "py"))
    tool.global_qstrs = tool.GlobalQStrList()
    found = []

    def walk(obj, where):
        if isinstance(obj, tuple):
            for x in obj:
                walk(x, where)
        elif (isinstance(obj, int) and not isinstance(obj, bool)
              and not tool.mp_small_int_fits(obj) and -(1 << 30) <= obj < (1 << 30)):
            found.append(f"{where}: {obj}")

    for mpy in sorted((frozen_mpy / "mqtt_v5").rglob("*.mpy")):
        for obj in tool.read_mpy(str(mpy)).obj_table:
            walk(obj, mpy.relative_to(frozen_mpy).with_suffix(".py").as_posix())
    return found


def test_frozen_code_has_no_long_int_constants(mp_src, tmp_path):
    """mpy-tool freezes an int constant outside -0x2000..0x1FFF (the small-int range of the
    smallest target) as a long int in ROM: arithmetic on it then allocates, in firmware
    only (from .py/.mpy it is a small int). A hot path must not have one."""
    out = device.freeze("ESP32_GENERIC", mp_src, tmp_path / "freeze")
    found = _long_int_constants(mp_src, out / "frozen_mpy")
    assert not found, "long ints when frozen: " + "; ".join(found)


def test_the_long_int_check_finds_one(mp_src, tmp_path):
    boards = _fake_repo(tmp_path, with_aws=False)
    (tmp_path / "lib" / "mqtt_v5" / "bits.py").write_text(
        "_SMALL = (1, 0x1FFF)\n_LARGE = (1, 1 << 15)\n")
    out = device.freeze("ESP32_GENERIC", mp_src, tmp_path / "out",
                        boards / "ESP32_GENERIC" / "manifest.py")
    found = _long_int_constants(mp_src, out / "frozen_mpy")
    assert "mqtt_v5/bits.py: 32768" in found
    assert not [f for f in found if f.endswith(": 8191")]
