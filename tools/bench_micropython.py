"""Memory under real MicroPython (the WebAssembly port, via ``node tools/mp_run.mjs --exec``).

bytes_per_op   gc.mem_alloc() delta over 1000 calls after a warm-up, GC disabled, divided
               by 1000. The hot paths must show 0; cold paths are listed for contrast.
import_heap    what ``import X`` leaves allocated once collected, each in a fresh
               interpreter; from .py source (compiled on import, as when a device
               holds .py files) and from .mpy (as the mip package mpy/: mpy-cross -O3;
               frozen modules would keep their bytecode in flash and cost less).

The WebAssembly port is a 32-bit VM with the ESP32's object and GC block sizes (16-byte
blocks), so byte counts match a device; its speed does not, so no timings are reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
MP_RUN = ROOT / "tools" / "mp_run.mjs"
N = 1000

_ALLOC_CODE = r"""
import gc, json
from mqtt_v5 import codec, _server_codec

N = %(n)d
TOPIC = b"sensors/room1/temper"
TOPIC_STR = "sensors/room1/temper"
PAYLOAD = bytes(range(64))
buf = bytearray(256)

def alloc(fn):
    fn(); fn()
    gc.collect(); gc.disable()
    a = gc.mem_alloc()
    for _ in range(N):
        fn()
    b = gc.mem_alloc()
    gc.enable()
    return (b - a) / N

n = codec.encode_publish(buf, TOPIC, PAYLOAD, 1, 77)
incoming = bytes(buf[:n])
rd = codec.PacketReader(512)
view = codec.PublishView()
ack = codec.AckView()
ackbuf = bytearray(4)

def enc0(): codec.encode_publish(buf, TOPIC, PAYLOAD, 0)
def enc1(): codec.encode_publish(buf, TOPIC, PAYLOAD, 1, 77)
def enc1_str(): codec.encode_publish(buf, TOPIC_STR, PAYLOAD, 1, 77)
def header(): codec.encode_publish_header(buf, TOPIC, 4096, 1, 77)
def dec():
    v = rd.free()
    v[:n] = incoming
    rd.wrote(n)
    f = rd.next()
    codec.decode_publish_into(view, f, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
    rd.next()
def dec_objects():
    dec()
    view.topic(); view.payload()
def dec_cold(): _server_codec.decode(incoming)
def puback():
    codec.encode_ack(ackbuf, codec.PUBACK, 77)
    rd.feed(ackbuf)
    f = rd.next()
    codec.decode_ack_into(ack, f, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
    rd.next()
def ping():
    rd.feed(codec.PINGRESP_BYTES)
    rd.next(); rd.next()

out = []  # pairs: a MicroPython dict would lose the order
for name, fn in (("encode_publish_qos0", enc0), ("encode_publish_qos1", enc1),
                 ("encode_publish_header", header), ("decode_publish_into", dec),
                 ("puback_encode_and_decode", puback), ("pingresp_framing", ping),
                 ("encode_publish_qos1_str_topic", enc1_str),
                 ("decode_publish_plus_topic_payload", dec_objects),
                 ("decode_cold_path", dec_cold)):
    out.append((name, alloc(fn)))
print("BENCH " + json.dumps(out))
"""

# gc.collect() in this port only asks for a collection, made when control next enters
# the VM from JavaScript: ``settled`` (bench_memory._SETTLED) lets the event loop go
# round so that garbage (the compiler's, from .py) is not counted as kept.
_IMPORT_CODE = r"""
import gc, json, sys, asyncio
%(pre)s
%(settled)s

async def main():
    a = await settled()
    import %(target)s
    b = await settled()
    print("BENCH " + json.dumps({"heap": b - a}))


await asyncio.create_task(main())
"""

# (row label, module to import, modules imported before the baseline)
IMPORTS = (
    ("mqtt_v5 (package, lazy names)", "mqtt_v5", ""),
    ("mqtt_v5.codec (+properties, topic, errors, _compat)", "mqtt_v5.codec", ""),
    ("mqtt_v5.reasons", "mqtt_v5.reasons", "import mqtt_v5.codec"),
    ("mqtt_v5.session (+codec)", "mqtt_v5.session", ""),
    ("mqtt_v5.client (asyncio imported before)", "mqtt_v5.client", "import asyncio"),
)


def _node() -> str:
    node = shutil.which("node")
    if not node:
        raise RuntimeError("node is not installed (make setup)")
    return node


def _exec(code: str, root: Path = ROOT):
    """Run ``code`` under MicroPython with ``root``/lib as its /lib; returns the JSON the
    code printed after "BENCH "."""
    proc = subprocess.run(
        [_node(), str(root / "tools" / "mp_run.mjs"), "--exec", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(
        f"MicroPython gave no result (exit {proc.returncode}):\n"
        f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    )


def _mpy_root(tmp: Path) -> Path:
    """A tree like the repository's whose lib/ holds the core's device modules as .mpy only
    (compiled as mpy/ is): mp_run.mjs copies ROOT/lib into MicroPython's /lib."""
    (tmp / "tools").mkdir()
    shutil.copy(MP_RUN, tmp / "tools" / "mp_run.mjs")
    (tmp / "node_modules").symlink_to(ROOT / "node_modules")
    import gen_package_json as g

    core = [f for f in g.device_files(tracked_only=False) if not f.startswith(g.EXTENSION_DIRS)]
    g.compile_tree(tmp / "lib", core)  # as the mip package mpy/ is compiled (-O3)
    return tmp


def bench_micropython(results: dict) -> None:
    from bench_memory import _SETTLED

    results["bytes_per_op"] = dict(_exec(_ALLOC_CODE % {"n": N}))
    heap = {}
    with tempfile.TemporaryDirectory() as tmp:
        mpy_root = _mpy_root(Path(tmp))
        for label, target, pre in IMPORTS:
            row = {}
            for kind, root in (("from_py", ROOT), ("from_mpy", mpy_root)):
                try:
                    row[kind] = _exec(
                        _IMPORT_CODE % {"pre": pre, "target": target, "settled": _SETTLED}, root
                    )["heap"]
                except RuntimeError as e:
                    row[kind] = "error: " + str(e).splitlines()[-1][:60]
            heap[label] = row
    results["import_heap_bytes"] = heap
    results["conditions"] = {
        "iterations": N,
        "runtime": "MicroPython 1.27 WebAssembly (32-bit, ESP32 block sizes)",
    }


def _table(results: dict) -> str:
    out = ["bytes allocated per operation (MicroPython, after warm-up, 1000 calls)"]
    for name, v in results["bytes_per_op"].items():
        out.append(f"  {name:<36}{v:>10.1f}")
    out.append("heap used by an import (bytes)          from .py    from .mpy")
    for label, row in results["import_heap_bytes"].items():
        cells = [
            f"{row[k]:>11,}" if isinstance(row[k], int) else f"  {row[k]}"
            for k in ("from_py", "from_mpy")
        ]
        out.append(f"  {label:<52}" + "".join(cells))
    out.append("(first six rows: the hot paths, must be 0; the rest: cold paths for contrast)")
    return "\n".join(out)


bench_micropython.table = _table  # type: ignore[attr-defined]

if __name__ == "__main__":
    res: dict = {}
    bench_micropython(res)
    print(_table(res))
