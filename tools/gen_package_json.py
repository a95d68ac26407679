"""Generate lib/package.json, the mip manifest of the mqtt_v5 package.

    python tools/gen_package_json.py          # (re)write lib/package.json
    python tools/gen_package_json.py --check  # exit 1 if the committed file is stale

Lists every lib/mqtt_v5/**/*.py (only those git tracks, in a git checkout) except the
CPython-only modules (``CPYTHON_ONLY``: a device never imports them) as [device path,
path relative to package.json], so that `mpremote mip install lib/package.json` (or a URL to
it) copies the package into :lib/.
The version is __version__ from lib/mqtt_v5/__init__.py when it defines one, else the version
already in lib/package.json, else 0.1.0.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
PACKAGE = "mqtt_v5"
OUT = LIB / "package.json"
# Imported only under CPython (by _compat's CPython branch): not installed on, nor frozen into,
# a device. boards/mqtt_v5_manifest.py (the freeze list) leaves out the same files.
CPYTHON_ONLY = frozenset({"mqtt_v5/_compat_cpython.py", "mqtt_v5/_cpython_stream.py"})
# Separately installable parts with a package.json of their own (mqtt_v5.aws:
# lib/mqtt_v5/aws/package.json, checked by host_tests/aws/test_package.py): not in the core's.
EXTENSION_DIRS = ("mqtt_v5/aws/",)


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


def module_files() -> list[str]:
    """lib/mqtt_v5/**/*.py relative to lib/. In a git checkout only files git tracks count, so
    a module someone is still writing (untracked) does not make the committed file stale."""
    found = {
        p.relative_to(LIB).as_posix()
        for p in (LIB / PACKAGE).rglob("*.py")
        if "__pycache__" not in p.parts
    } - CPYTHON_ONLY
    found = {f for f in found if not f.startswith(EXTENSION_DIRS)}
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


def generate() -> str:
    files = module_files()
    # One [device path, source] pair per line: diffs stay one line per module.
    urls = ",\n".join(f"    {json.dumps([f, f])}" for f in files)
    return (
        f'{{\n  "urls": [\n{urls}\n  ],\n  "deps": [],\n  "version": {json.dumps(version())}\n}}\n'
    )


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run `python tools/gen_package_json.py`")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
