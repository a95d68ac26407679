"""The client's memory under real MicroPython (WebAssembly port, ``node tools/mp_run.mjs``).

An ``MqttClient`` with DEFAULT ``ConnectOptions`` talks over ``memory_pipe()`` to the scripted
server of the portable tests (host_tests/portable/_mqtt_server.py, recording off), in the
same event loop. Everything the server owns (its object, its buffers, its task and the
pipe's two rings, which stand in for the sockets' kernel buffers) is allocated BEFORE the
client's baseline, so the figures below are the client's:

heap         what stays allocated (gc.mem_alloc() once a collection has run: see
             ``_SETTLED``): ``import mqtt_v5``; the modules a
             connected client loads; ``MqttClient(ConnectOptions())`` (buffers, session,
             in-flight table); what ``connect`` adds (tasks, events); and the sum of the
             three without module code. Twice: with lib/ as .py files (compiled on import:
             bytecode and qstrs in RAM) and as .mpy files compiled as the mip package
             mpy/ is (mpy-cross -O3; a frozen firmware keeps bytecode, constants and qstrs
             in flash and pays less still). The target applies to the .mpy sum.
per_op       bytes the client allocates per operation in steady state (warm-up, then N
             operations with the GC disabled; the server then answers synchronously inside
             the client's write, allocating nothing, so all of it is the client's): QoS 0
             publish; QoS 1 publish stop-and-wait (PUBACK from the server); a received
             QoS 0 / QoS 1 message (PUBLISH from the server, a plain callback, the PUBACK
             back). Each operation is followed by ``await asyncio.sleep_ms(0)`` so the I/O
             tasks run; the harness's own cost (its coroutine, 16 B per sleep_ms(0) in
             this build, the server's read of the pipe) is subtracted. Breakdown:
             ``session`` the sans-IO core alone on the same exchange; ``pipe`` the client
             end of the memory pipe: calls made (writes / reads / reads that had to wait)
             at its own measured price per call;
             ``wake-ups`` tasks queued by an Event.set() (Event.set is wrapped to count
             them) at their measured price; ``driver`` the rest (client.py).
pipe         the memory pipe's own cost per call, measured alone: ``write`` (room in
             the ring), ``readinto`` with bytes waiting, and a readinto that must wait.
idle         bytes allocated per second by a connected, idle client (keep-alive 60 s),
             over 2 s with the GC disabled, less the harness's own sleep (measured on a
             10 ms one; it costs 64 to 112 B in this port, so +-24 B/s is noise; a client
             that polled would show hundreds or thousands).

Every measurement starts with no collection pending (``_SETTLED``): in this port one
requested by gc.collect() runs at the next return from JavaScript, and would free, in the
middle of a measurement, garbage made before it (the per-op figures read a little low then).

``bench_memory(results)`` fills ``results``; ``python tools/bench_memory.py`` prints a table
(``--json`` for the raw numbers, ``-n`` iterations).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MP_RUN = ROOT / "tools" / "mp_run.mjs"
SERVER = ROOT / "host_tests" / "portable" / "_mqtt_server.py"
N = 300
TARGET_BYTES = 8192

_CODE = r"""
import gc, sys, json
import asyncio
import micropython

N = %(n)d
out = {}
%(settled)s

async def imports():
    m0 = await settled()
    import mqtt_v5
    m1 = await settled()
    import mqtt_v5.client, mqtt_v5.memory
    m2 = await settled()
    return m1 - m0, m2 - m1


heap_imports = await asyncio.create_task(imports())
from mqtt_v5.client import MqttClient, ConnectOptions
from mqtt_v5.memory import memory_pipe
from mqtt_v5._compat import READY
modules = sorted(k for k in sys.modules if k.startswith("mqtt_v5"))

exec(SERVER_SRC)  # the scripted server: its code and objects are not the client's

TOPIC = b"sensors/room1/temper"
PAYLOAD = bytes(range(64))
C = codec_module = sys.modules["mqtt_v5._server_codec"]


def pkt(p):
    return C.encode_bytes(p)


async def main():
    srv = ScriptedServer(capacity=4096, max_packet_size=512)
    srv.record = False
    srv.echo = False
    a, b = memory_pipe(4096)
    srv.conn = b
    srv.task = asyncio.create_task(srv._serve(b))

    async def factory():
        return a

    await asyncio.sleep_ms(1)
    received = [0]

    def on_msg(m):
        received[0] += 1

    srv.received.clear()
    srv.connects.clear()
    m3 = await settled()
    c = MqttClient(ConnectOptions())
    m4 = await settled()
    await c.connect(factory)
    await asyncio.sleep_ms(20)  # let the handshake's leftovers (a wait_for) go
    srv.received.clear()
    srv.connects.clear()
    m5 = await settled()
    out["heap"] = [["import mqtt_v5", heap_imports[0]],
                   ["modules of a connected client", heap_imports[1]],
                   ["MqttClient(ConnectOptions())", m4 - m3],
                   ["connect (tasks, events)", m5 - m4]]
    out["modules"] = modules

    # ---- steady state, bytes per operation ------------------------------------------
    # The server now answers synchronously inside the client's write (serve_now: no
    # task, no coroutine, nothing allocated), so what is measured is the client's:
    # client.py, the session, and the client end of the pipe.
    await c.subscribe("in/#", on_msg)
    await asyncio.sleep_ms(5)
    srv.task.cancel()
    await asyncio.sleep_ms(5)
    calls = [0, 0, 0]  # client end: writes, reads, reads that had to wait
    a_write = a.write
    a_readinto = a.readinto
    a_take = a._take

    def write(buf):
        calls[0] += 1
        w = a_write(buf)
        srv.serve_now()
        return w

    def readinto(buf):
        calls[1] += 1
        return a_readinto(buf)

    def take(buf):
        n = a_take(buf)
        if n < 0:
            calls[2] += 1
        return n

    a.write = write
    a.readinto = readinto
    a._take = take
    sleeps = [0]
    # Task wake-ups: an Event.set() that queues a parked task. Queuing a task costs
    # 16 B in this port (its scheduler arms a JavaScript timer per task queued);
    # extmod asyncio's TaskQueue.push (unix, ESP32) links the task into a pairing heap
    # and allocates nothing. Counted per op, charged at their measured price in a
    # column of their own.
    wakes = [0]
    ev_set = asyncio.Event.set

    def counting_set(ev):
        if ev.waiting.peek():
            wakes[0] += 1
        ev_set(ev)

    asyncio.Event.set = counting_set

    def step():
        # The harness lets the I/O tasks run with sleep_ms(0); it costs a few bytes in
        # some builds (16 B in the WebAssembly port), so each one is counted.
        sleeps[0] += 1
        return asyncio.sleep_ms(0)

    async def allocated(op):
        for _ in range(20):
            await op()
        await settled()  # (no collection left pending: it would run mid-measure)
        gc.disable()
        c0 = calls[:]
        s0 = sleeps[0]
        w0 = wakes[0]
        before = gc.mem_alloc()
        for _ in range(N):
            await op()
        after = gc.mem_alloc()
        gc.enable()
        return ((after - before) / N, [(calls[i] - c0[i]) / N for i in range(3)],
                (sleeps[0] - s0) / N, (wakes[0] - w0) / N)

    async def sleep_loop():
        for _ in range(N):
            await step()

    await settled()  # (no collection left pending: it would run mid-measure)
    gc.disable()
    before = gc.mem_alloc()
    await sleep_loop()
    per_sleep = (gc.mem_alloc() - before) / N
    gc.enable()

    async def nop():
        await step()

    coro = (await allocated(nop))[0] - per_sleep  # the op's own coroutine
    out["harness"] = {"per_sleep": per_sleep, "per_op_coroutine": coro}

    # What queuing a woken task costs: set() of an Event a task is parked on.
    wake_ev = asyncio.Event()
    woken = [0]

    async def sleeper():
        while True:
            wake_ev.clear()
            await wake_ev.wait()
            woken[0] += 1

    wake_task = asyncio.create_task(sleeper())
    await step()
    per_wake = 0
    for i in range(N + 10):
        if i == 10:
            await settled()  # (no collection left pending: it would run mid-measure)
            gc.disable()
            per_wake = 0
        before = gc.mem_alloc()
        wake_ev.set()
        per_wake += gc.mem_alloc() - before
        await step()
    gc.enable()
    wake_task.cancel()
    await step()
    per_wake /= N
    out["harness"]["per_wake"] = per_wake

    # What serve_now itself costs per call (the pipe's take: a memoryview), to subtract.
    def serve_alone():
        a._off = 0
        a._put(pkt1)
        srv.serve_now()
        a._n = a._r = 0  # drop the PUBACK it answered

    pkt1 = pkt(C.Publish(TOPIC, PAYLOAD, qos=1, packet_id=9))
    for _ in range(10):
        serve_alone()
    await settled()  # (no collection left pending: it would run mid-measure)
    gc.disable()
    before = gc.mem_alloc()
    for _ in range(N):
        serve_alone()
    per_serve = (gc.mem_alloc() - before) / N
    gc.enable()
    out["harness"]["server_per_write"] = per_serve

    async def measure(name, op, base):
        total, per, n_sleeps, n_wakes = await allocated(op)
        # The op's own coroutine: an empty one of the same shape (its frame size
        # depends on its stack depth and locals), with its own sleeps subtracted.
        b_total, _, b_sleeps, _ = await allocated(base)
        own = b_total - b_sleeps * per_sleep
        mine = total - own - n_sleeps * per_sleep - per[0] * per_serve
        out.setdefault("per_op", []).append([name, mine, per, n_wakes])

    class Null:
        def publish(self, topic, payload, qos=0):
            return READY

    null = Null()

    async def pub0_shape():
        await null.publish(TOPIC, PAYLOAD)
        await step()

    async def pub1_shape():
        await null.publish(TOPIC, PAYLOAD, 1)
        await step()

    async def pub0():
        await c.publish(TOPIC, PAYLOAD)
        await step()

    async def pub1():
        await c.publish(TOPIC, PAYLOAD, 1)
        await step()

    in0 = pkt(C.Publish("in/room1/temper", PAYLOAD))
    in1 = pkt(C.Publish("in/room1/temper", PAYLOAD, qos=1, packet_id=7))

    async def recv(data, real=True):
        want = received[0] + 1
        handled = srv.handled
        b._off = 0
        if real:
            b._put(data)  # the server sends (plain method: nothing allocated)
        else:  # its shape: the same frame, nothing sent
            received[0] = want
            srv.handled += 1
        while received[0] < want:
            await step()
        if data is in1:
            while srv.handled == handled:  # the PUBACK is back at the server
                await step()
        await step()

    await measure("publish QoS 0", pub0, pub0_shape)
    await measure("publish QoS 1 (stop-and-wait)", pub1, pub1_shape)
    await measure("receive QoS 0", lambda: recv(in0), lambda: recv(in0, False))
    await measure("receive QoS 1", lambda: recv(in1), lambda: recv(in1, False))
    asyncio.Event.set = ev_set
    a.write = a_write
    a.readinto = a_readinto
    a._take = a_take

    # ---- idle ------------------------------------------------------------------------
    await asyncio.sleep_ms(50)
    await settled()  # (no collection left pending: it would run mid-measure)
    gc.disable()
    # The harness's own sleep costs the same for 10 ms as for 2 s (its wake-up):
    # what the 2 s sleep costs more is the idle client's.
    await asyncio.sleep_ms(10)  # (the first sleep after a collection costs more)
    m0 = gc.mem_alloc()
    await asyncio.sleep_ms(10)
    m1 = gc.mem_alloc()
    await asyncio.sleep_ms(2000)
    m2 = gc.mem_alloc()
    gc.enable()
    out["idle_bytes_per_s"] = ((m2 - m1) - (m1 - m0)) / 1.99
    await c.disconnect()
    await srv.stop()

    # ---- the pipe alone --------------------------------------------------------------
    p, q = memory_pipe(4096)
    buf = bytearray(512)
    data = in1

    # Each loop runs in one coroutine: the per-call figure is the call's own cost (a
    # coroutine per call shows; the loop's frame, made once, is spread over N calls).
    async def w(n):
        for _ in range(n):
            await p.write(data)
            q._n = q._r = 0  # empty the peer's ring without reading

    async def wr(n):
        for _ in range(n):
            await p.write(data)
            await q.readinto(buf)

    async def per_call(fn):
        await fn(10)
        await settled()  # (no collection left pending: it would run mid-measure)
        gc.disable()
        before = gc.mem_alloc()
        await fn(N)
        after = gc.mem_alloc()
        gc.enable()
        return (after - before) / N

    cw = await per_call(w)
    cwr = await per_call(wr)
    # A read that finds the ring empty waits for the writer (its Event.wait).
    reads = [0]

    async def reader(n):
        for _ in range(n):
            await q.readinto(buf)
            reads[0] += 1

    async def waiting_reads(n):
        task = asyncio.create_task(reader(n))
        await step()  # the reader now waits
        for _ in range(n):
            p._off = 0
            p._put(data)
            await step()
        await task

    s_before = sleeps[0]
    await waiting_reads(10)
    s_before = sleeps[0]
    await settled()  # (no collection left pending: it would run mid-measure)
    gc.disable()
    before = gc.mem_alloc()
    await waiting_reads(N)
    after = gc.mem_alloc()
    gc.enable()
    # (less the wake-up of the reader: charged to the wake-ups)
    cwait = (after - before - (sleeps[0] - s_before) * per_sleep) / N - per_wake
    out["pipe"] = {"write": cw, "readinto": cwr - cw, "readinto_waiting": cwait}

    # ---- the session alone, same exchanges --------------------------------------------
    from mqtt_v5 import session as S

    s = S.Session("")
    s.connect(0)
    s.flushed(0)
    s.reader.feed(pkt(C.Connack()))
    s.poll(0)

    def s_pub0():
        s.publish(TOPIC, PAYLOAD)
        s.flushed(0)

    ack = pkt(C.Ack(C.PUBACK, 1))
    mv = memoryview(bytearray(ack))

    def s_pub1():
        pid = s.publish(TOPIC, PAYLOAD, 1)
        s.flushed(0)
        mv[2] = pid >> 8
        mv[3] = pid & 0xFF
        s.reader.feed(mv)
        while s.poll(0):
            s.flushed(0)

    def s_recv(data):
        s.reader.feed(data)
        while s.poll(0):
            s.flushed(0)

    def s_recv0():
        s_recv(in0)

    def s_recv1():
        s_recv(in1)

    sess = []
    for fn in (s_pub0, s_pub1, s_recv0, s_recv1):
        for _ in range(10):
            fn()
        await settled()  # (no collection left pending: it would run mid-measure)
        gc.disable()
        before = gc.mem_alloc()
        for _ in range(N):
            fn()
        after = gc.mem_alloc()
        gc.enable()
        sess.append((after - before) / N)
    out["session"] = sess
    print("BENCH " + json.dumps(out))


await asyncio.create_task(main())
"""


def _node() -> str:
    node = shutil.which("node")
    if not node:
        raise RuntimeError("node is not installed (make setup)")
    return node


# In this port gc.collect() only asks for a collection: it is made when control next
# enters the VM from JavaScript (no roots on the C stack then). Until then nothing is
# freed -- a gc.mem_alloc() right after gc.collect() counts every bit of garbage made
# since the baseline. So: collect, then let the event loop go round. The lowest of a few
# rounds: a Python object handed to JavaScript (the scheduler's timer callback) is held
# until JavaScript's own GC lets go of it, which adds 16 B here and there at random.
_SETTLED = r"""
async def settled():
    low = None
    for _ in range(4):
        gc.collect()
        await asyncio.sleep_ms(1)
        m = gc.mem_alloc()
        if low is None or m < low:
            low = m
    return low
"""

# ``import mqtt_v5`` alone, in a fresh interpreter with nothing else compiled: compiling
# from source also grows MicroPython's qstr pool in chunks, and a chunk started by a big
# snippet would be charged to whichever import comes next.
_IMPORT_CODE = (
    r"""
import gc, json, asyncio
"""
    + _SETTLED
    + r"""

async def main():
    m0 = await settled()
    import mqtt_v5
    print("BENCH " + json.dumps(await settled() - m0))


await asyncio.create_task(main())
"""
)


def _exec(code: str, root: Path = ROOT):
    """Run ``code`` under MicroPython with ``root``/lib as its /lib."""
    proc = subprocess.run(
        [_node(), str(root / "tools" / "mp_run.mjs"), "--exec", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(
        f"MicroPython gave no result (exit {proc.returncode}):\n"
        f"{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
    )


def run(n: int = N) -> dict:
    """The whole run with lib/ as .py; its heap part again with lib/ as .mpy."""
    from bench_micropython import _mpy_root

    code = f"SERVER_SRC = {SERVER.read_text()!r}\n" + _CODE % {"n": n, "settled": _SETTLED}
    out = _exec(code)
    out["heap"][0][1] = _exec(_IMPORT_CODE)
    with tempfile.TemporaryDirectory() as tmp:
        root = _mpy_root(Path(tmp))
        mpy = _exec(code, root)
        mpy["heap"][0][1] = _exec(_IMPORT_CODE, root)
    out["heap_mpy"] = mpy["heap"]
    return out


_SUMMED = ("import mqtt_v5", "MqttClient(ConnectOptions())", "connect (tasks, events)")


def bench_memory(results: dict, n: int = N) -> None:
    raw = run(n)
    py = dict(raw["heap"])
    mpy = dict(raw["heap_mpy"])
    results["heap_bytes"] = {k: {"from_py": py[k], "from_mpy": mpy[k]} for k in py}
    results["client_ram_without_module_code"] = {
        "from_py": sum(py[k] for k in _SUMMED),
        "from_mpy": sum(mpy[k] for k in _SUMMED),
    }
    results["target_bytes"] = TARGET_BYTES
    results["modules_loaded"] = raw["modules"]
    pipe = raw["pipe"]
    per_wake = raw["harness"]["per_wake"]
    rows = {}
    for (name, total, calls, wakes), sess in zip(raw["per_op"], raw["session"], strict=True):
        writes, reads, waits = calls
        pipe_bytes = (
            writes * pipe["write"]
            + reads * pipe["readinto"]
            + waits * (pipe["readinto_waiting"] - pipe["readinto"])
        )
        wake_bytes = wakes * per_wake
        rows[name] = {
            "total": round(total, 1),
            "session": round(sess, 1),
            "pipe w/r/wait": f"{writes:.1f}/{reads:.1f}/{waits:.1f}",
            "pipe_bytes": round(pipe_bytes, 1),
            "wake-ups": f"{wakes:.1f} x {per_wake:.0f}",
            "driver": round(total - sess - pipe_bytes - wake_bytes, 1),
        }
    results["bytes_per_op"] = rows
    results["pipe_bytes_per_call"] = pipe
    results["bytes_per_wake_up"] = per_wake
    results["idle_bytes_per_s"] = raw["idle_bytes_per_s"]
    results["conditions"] = {
        "iterations": n,
        "payload_bytes": 64,
        "topic_bytes": 20,
        "runtime": "MicroPython 1.27 WebAssembly (32-bit, ESP32 block sizes)",
        "options": "ConnectOptions() defaults",
    }


def _table(r: dict) -> str:
    out = ["heap (bytes that stay allocated)" + " " * 27 + "from .py  from .mpy"]
    for k, v in r["heap_bytes"].items():
        out.append(f"  {k:<48}{v['from_py']:>10,}{v['from_mpy']:>10,}")
    label = f"client RAM without module code (target {r['target_bytes']:,})"
    ram = r["client_ram_without_module_code"]
    out.append(f"  {label:<48}{ram['from_py']:>10,}{ram['from_mpy']:>10,}")
    out.append(
        "  (import mqtt_v5 + MqttClient(ConnectOptions()) + connect; the target is for .mpy)"
    )
    out.append("bytes allocated per operation, steady state")
    cols = ["total", "session", "pipe w/r/wait", "pipe_bytes", "wake-ups", "driver"]
    out.append("  " + " " * 32 + "".join(c.rjust(16) for c in cols))
    for name, row in r["bytes_per_op"].items():
        out.append(f"  {name:<32}" + "".join(str(row[c]).rjust(16) for c in cols))
    p = r["pipe_bytes_per_call"]
    out.append(
        f"  memory pipe per call: write {p['write']:.1f} B, readinto {p['readinto']:.1f} B "
        f"(data waiting), {p['readinto_waiting']:.1f} B (waits for it)"
    )
    out.append(
        f"  a task wake-up (Event.set queuing a parked task): "
        f"{r['bytes_per_wake_up']:.1f} B in this port (a JavaScript timer per task "
        "queued; extmod asyncio's TaskQueue.push allocates nothing)"
    )
    out.append(f"idle, connected (keep-alive 60 s): {r['idle_bytes_per_s']:.1f} B/s")
    out.append("modules loaded: " + ", ".join(r["modules_loaded"]))
    return "\n".join(out)


bench_memory.table = _table  # type: ignore[attr-defined]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=N)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res: dict = {}
    bench_memory(res, args.n)
    print(json.dumps(res, indent=2) if args.json else _table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
