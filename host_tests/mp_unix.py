"""Run code on MicroPython's unix port: the device stand-in with real sockets and mbedTLS.

The binaries come from ``$MICROPYTHON_UNIX`` (a folder holding ``micropython-unix32`` and
``micropython-unix64``, or the folder above it with ``bin/``), defaulting to
``../shared/micropython/bin`` beside the checkout. Nothing of it is ever copied into the
repository.

    from mp_unix import UNIX_PORTS, run_script, mpy_tree
    proc = run_script("unix32", "print(1)", heapsize="128k")

Tests take the ``mp_unix`` fixture (conftest.py), parametrized over both binaries; without
them those tests skip with ``SKIP_REASON``, and under ``CI=true`` the session then fails
(conftest's ``pytest_sessionfinish``): CI always has them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
BUILD = ROOT / ".build"
UNIX_PORTS = ("unix32", "unix64")
SKIP_REASON = "MicroPython unix port not found"  # conftest counts skips carrying this text


def micropython_dir() -> Path:
    """The folder with the unix-port binaries (it may not exist)."""
    env = os.environ.get("MICROPYTHON_UNIX")
    base = Path(env) if env else ROOT.parent / "shared" / "micropython"
    if (base / "bin").is_dir():
        base = base / "bin"
    return base.resolve()


def micropython_root() -> Path:
    """The shared MicroPython folder (source tarball, build-unix.sh, peers)."""
    return micropython_dir().parent


def binary(port: str) -> Path | None:
    """Path of ``micropython-<port>`` if it exists and runs here, else None."""
    path = micropython_dir() / f"micropython-{port}"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def available() -> dict[str, Path]:
    return {p: b for p in UNIX_PORTS if (b := binary(p)) is not None}


def why_missing() -> str:
    return f"{SKIP_REASON} (looked in {micropython_dir()}; set MICROPYTHON_UNIX)"


def mpy_tree(arch: str = "host") -> Path:
    """The device modules compiled into .build/mpy-unix/<arch>/ exactly as the mip package
    mpy/ is made (tools/gen_package_json.py: same files, same mpy-cross flags; equal bytes
    once `make package-json` has run), from lib/ as it is now (untracked modules included),
    remade for the files whose source is newer. Returns the folder to put on MICROPYPATH."""
    if str(ROOT / "tools") not in sys.path:
        sys.path.append(str(ROOT / "tools"))
    import gen_package_json

    return gen_package_json.compile_tree(
        BUILD / "mpy-unix" / arch, gen_package_json.device_files(tracked_only=False),
        None if arch == "host" else arch)


def renamed(path: str | Path) -> str | Path:
    """``path`` as it runs against the .mpy package: a test or bench program that reaches
    internals by name (tools/mpy_names.py RENAMED_PARTS), or a folder of them, as a copy
    with the names the package renamed (in .build/mpy-renamed/<map>/); anything else as
    it is."""
    if not isinstance(path, Path) and ("\n" in path or not Path(path).exists()):
        return path  # (source text)
    if str(ROOT / "tools") not in sys.path:
        sys.path.append(str(ROOT / "tools"))
    import gen_package_json
    import mpy_names

    out = BUILD / "mpy-renamed" / gen_package_json.names_stamp()
    return mpy_names.renamed_copy(Path(path), out, gen_package_json.renamed_names())


def run_script(
    port: str | Path,
    script: str | Path,
    *,
    args: list[str] = (),
    heapsize: str | int | None = "1m",
    path: list[str | Path] | None = None,
    mpy: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``script`` (a file, or source text) on a unix port and return the finished process.

    ``path`` is MICROPYPATH before ``.frozen`` (default: lib/ as .py, or as .mpy with
    ``mpy=True``, then host_tests/mp_scripts/). With ``mpy=True`` the script, the path's
    folders and the ``.py`` arguments that are tests or bench programs run ``renamed`` (as
    the .mpy package names what they reach). ``heapsize`` is passed as ``-X heapsize``.
    """
    exe = Path(port) if isinstance(port, Path) else binary(port)
    if exe is None:
        raise FileNotFoundError(why_missing())
    if path is None:
        path = [mpy_tree() if mpy else LIB, ROOT / "host_tests" / "mp_scripts"]
    if mpy:  # (the tests' own scripts reach internals by the names the package has)
        path = [renamed(p) for p in path]
        script = renamed(script)
        args = [renamed(a) if isinstance(a, Path) or str(a).endswith(".py") else a
                for a in args]
    tmp = None
    if (isinstance(script, str) and "\n" in script) or (
        isinstance(script, str) and not Path(script).exists()
    ):
        tmp = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        tmp.write(script)
        tmp.close()
        script = tmp.name
    cmd = [str(exe)]
    if heapsize is not None:
        cmd += ["-X", f"heapsize={heapsize}"]
    cmd += [str(script), *map(str, args)]
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = ":".join([*map(str, path), ".frozen"])
    full_env.update(env or {})
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd
        )
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def last_json(proc: subprocess.CompletedProcess):
    """The JSON object on the last line of a script's stdout (scripts report that way)."""
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"no output (exit {proc.returncode}):\n{proc.stderr}")
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise AssertionError(
            f"last line is not JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from None
