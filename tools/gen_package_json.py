"""Generate the mip packages of mqtt_v5, and say how a device's .mpy files are compiled.

    python tools/gen_package_json.py          # (re)write lib/package.json and mpy/
    python tools/gen_package_json.py --check  # exit 1 if either is stale
    (make package-json runs the first: after ANY change under lib/mqtt_v5/, or the suite fails)

Two packages, for `mpremote mip install <package.json path or URL>` (files go to :lib/):

- ``mpy/package.json``: the device modules precompiled into ``mpy/mqtt_v5/**.mpy`` (bytecode
  only, ``.mpy`` version 6, ``MPY_CROSS_FLAGS``), so a device loads them without compiling;
  ``mpy/mqtt_v5/aws/package.json``: mqtt_v5.aws likewise (installed apart, as from lib/).
- ``lib/package.json``: the same modules as ``.py`` sources (a device compiles them at import:
  more heap; for debugging with line numbers, or a firmware that rejects our .mpy version).

Both list every lib/mqtt_v5/**/*.py (only those git tracks, in a git checkout) except the
CPython-only modules (``CPYTHON_ONLY``: a device never imports them); the core's packages
leave out ``EXTENSION_DIRS`` (lib/mqtt_v5/aws/package.json, checked by
host_tests/aws/test_package.py, is hand-written). Output is deterministic (sorted, the .mpy
source names relative to lib/), so --check compares bytes.

``compile_tree`` / ``mpy_cross`` are the one definition of how device .mpy files are made:
mpy/ here, ``tools/device.py compile_library`` (make deploy, with the board's -march),
``host_tests/mp_unix.py mpy_tree()`` (the unix-port tests) and the bench use them.
The version is __version__ from lib/mqtt_v5/__init__.py when it defines one, else the version
already in lib/package.json, else 0.1.0.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
PACKAGE = "mqtt_v5"
OUT = LIB / "package.json"
MPY_DIR = ROOT / "mpy"  # the mip package of precompiled .mpy (not "mip/": on the unix port
#                         a folder named mip in the current directory shadows the frozen mip)
# How every device .mpy is compiled. -O3: no line-number tables and no asserts (the library
# has none): measured on micropython-unix32, the mutual-TLS scenario needs 4 KiB less heap
# than with mpy-cross's default (README "Install"). No -march here: bytecode only, so one
# file serves every port (make deploy adds the board's -march; nothing is @native).
MPY_CROSS_FLAGS = ("-O3",)
# Imported only under CPython (by _compat's CPython branch): not installed on, nor frozen into,
# a device. boards/mqtt_v5_manifest.py (the freeze list) leaves out the same files.
CPYTHON_ONLY = frozenset({"mqtt_v5/_compat_cpython.py", "mqtt_v5/_cpython_stream.py"})
# Separately installable parts with a package.json of their own (mqtt_v5.aws:
# lib/mqtt_v5/aws/package.json, checked by host_tests/aws/test_package.py): not in the core's.
EXTENSION_DIRS = ("mqtt_v5/aws/",)


class MpyCrossError(RuntimeError):
    """mpy-cross rejected a module (the message has its error)."""


def version() -> str:
    init = LIB / PACKAGE / "__init__.py"
    if init.exists():
        m = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init.read_text(), re.M)
        if m:
            return m.group(1)
    if OUT.exists():
        try:
            return json.loads(OUT.read_text())["version"]
        except (ValueError, KeyError):
            pass
    return "0.1.0"


def device_files(tracked_only: bool = True) -> list[str]:
    """lib/mqtt_v5/**/*.py a device runs (mqtt_v5.aws included), relative to lib/. With
    ``tracked_only`` in a git checkout only files git tracks count, so a module someone is
    still writing (untracked) does not make the committed packages stale."""
    found = {
        p.relative_to(LIB).as_posix()
        for p in (LIB / PACKAGE).rglob("*.py")
        if "__pycache__" not in p.parts
    } - CPYTHON_ONLY
    if not tracked_only:
        return sorted(found)
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", f"{PACKAGE}/"],
            cwd=LIB,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(found)  # not a git checkout (e.g. a source tarball)
    tracked = {f for f in out.decode().split("\0") if f}
    return sorted(found & tracked)


def module_files() -> list[str]:
    """The core's device modules (lib/package.json's list): no extension parts."""
    return [f for f in device_files() if not f.startswith(EXTENSION_DIRS)]


# --------------------------------------------------------------------------- compiling --


@functools.cache
def mpy_cross_version() -> str:
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def source_name(rel: str) -> str:
    """The source name a .mpy records for lib/<rel>: the module's own name ("client" for
    "mqtt_v5/client.py", the package's for an __init__.py). Tracebacks show it; and it is
    a name the device interns anyway (importing mqtt_v5.client sets the attribute "client"
    on the package), where "mqtt_v5/client.py" would be one more qstr per module loaded:
    in the heap scenario that tipped MicroPython's qstr table past 620 entries, which
    allocates its next pool, 640 entries (4.5 KB), at once."""
    parts = Path(rel).with_suffix("").parts
    return parts[-2] if parts[-1] == "__init__" else parts[-1]


def renamed_names() -> dict[str, str]:
    """The core's internal names and the ROM names the .mpy build gives them
    (tools/mpy_names.py)."""
    import mpy_names

    return mpy_names.plan(mpy_names.core_files(core_modules()))


def names_stamp() -> str:
    """A short digest of ``renamed_names()``: trees compiled with another map are stale."""
    return hashlib.sha256(json.dumps(renamed_names()).encode()).hexdigest()[:16]


def core_modules() -> list[str]:
    """lib/mqtt_v5/*.py a device runs (not the aws part), relative to lib/: the modules
    whose internal names the .mpy build renames."""
    return sorted(p.relative_to(LIB).as_posix() for p in (LIB / PACKAGE).glob("*.py")
                  if p.relative_to(LIB).as_posix() not in CPYTHON_ONLY)


def mpy_cross(rel: str, dst: Path, arch: str | None = None) -> None:
    """Compile lib/<rel> (e.g. "mqtt_v5/client.py") into ``dst`` with ``MPY_CROSS_FLAGS``
    (plus -march=arch), recording ``source_name(rel)`` as its source; a core module with
    its internal names renamed (``renamed_names()``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    march = [f"-march={arch}"] if arch else []
    with tempfile.TemporaryDirectory() as tmp:
        src = LIB / rel
        if rel in core_modules():
            import mpy_names

            src = Path(tmp) / Path(rel).name
            src.write_text(mpy_names.rename((LIB / rel).read_text(), renamed_names()))
        proc = subprocess.run(
            [sys.executable, "-m", "mpy_cross", *MPY_CROSS_FLAGS, *march, "-s",
             source_name(rel), "-o", str(dst), str(src)],
            capture_output=True, text=True)
    if proc.returncode != 0:
        raise MpyCrossError(f"mpy-cross rejected {rel}:\n{proc.stderr}{proc.stdout}")


def compile_tree(out: Path, files: list[str], arch: str | None = None) -> Path:
    """``files`` (relative to lib/) compiled into ``out``/<same path>.mpy. Only what is
    missing or older than its source is recompiled; .mpy files not in ``files`` are removed,
    and the whole tree is remade when the flags or mpy-cross change (a stamp file records
    them). Returns ``out``."""
    stamp = out / ".mpy-cross"
    how = json.dumps([mpy_cross_version(), *MPY_CROSS_FLAGS, arch or "", "-s module",
                      names_stamp()])
    if not stamp.is_file() or stamp.read_text() != how:
        shutil.rmtree(out, ignore_errors=True)
    want = set()
    for rel in files:
        dst = out / Path(rel).with_suffix(".mpy")
        want.add(dst)
        if dst.exists() and dst.stat().st_mtime >= (LIB / rel).stat().st_mtime:
            continue
        mpy_cross(rel, dst, arch)
    for dst in out.rglob("*.mpy"):
        if dst not in want:
            dst.unlink()
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(how)
    return out


# ----------------------------------------------------------------------------- packages --


def _manifest(pairs: list[tuple[str, str]]) -> str:
    # One [device path, source] pair per line: diffs stay one line per module.
    urls = ",\n".join(f"    {json.dumps([d, s])}" for d, s in pairs)
    return (
        f'{{\n  "urls": [\n{urls}\n  ],\n  "deps": [],\n  "version": {json.dumps(version())}\n}}\n'
    )


def generate() -> str:
    """lib/package.json's text: the core's .py sources."""
    return _manifest([(f, f) for f in module_files()])


def generate_mpy() -> dict[str, bytes]:
    """mpy/'s files (path relative to mpy/ -> content): the .mpy of every device module, the
    core's package.json and one per extension part (urls relative to that package.json)."""
    files = device_files()
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rel in files:
            dst = Path(tmp) / Path(rel).with_suffix(".mpy")
            mpy_cross(rel, dst)
            out[Path(rel).with_suffix(".mpy").as_posix()] = dst.read_bytes()
    mpys = sorted(out)
    core = [m for m in mpys if not m.startswith(EXTENSION_DIRS)]
    out["package.json"] = _manifest([(m, m) for m in core]).encode()
    for ext in EXTENSION_DIRS:
        part = [m for m in mpys if m.startswith(ext)]
        if part:
            out[ext + "package.json"] = _manifest([(m, m[len(ext):]) for m in part]).encode()
    return out


def stale_mpy(want: dict[str, bytes] | None = None) -> list[str]:
    """Paths under mpy/ that differ from what generate_mpy() makes (missing, changed, or
    there but not generated)."""
    want = generate_mpy() if want is None else want
    have = {p.relative_to(MPY_DIR).as_posix() for p in MPY_DIR.rglob("*") if p.is_file()}
    bad = [p for p in sorted(want) if p not in have or (MPY_DIR / p).read_bytes() != want[p]]
    return bad + sorted(have - set(want))


def write_mpy(want: dict[str, bytes]) -> None:
    shutil.rmtree(MPY_DIR, ignore_errors=True)
    for rel, data in want.items():
        (MPY_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
        (MPY_DIR / rel).write_bytes(data)


def main(argv: list[str]) -> int:
    text = generate()
    want = generate_mpy()
    if "--check" in argv:
        stale = [] if OUT.exists() and OUT.read_text() == text else [OUT.relative_to(ROOT)]
        stale += [f"mpy/{p}" for p in stale_mpy(want)]
        if stale:
            print(f"stale: {', '.join(map(str, stale))}: run `make package-json`")
            return 1
        return 0
    OUT.write_text(text)
    write_mpy(want)
    print(f"wrote {OUT.relative_to(ROOT)} and {MPY_DIR.relative_to(ROOT)}/ "
          f"({len(want)} files, mpy-cross {' '.join(MPY_CROSS_FLAGS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
