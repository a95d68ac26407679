"""Heap kept by importing the mqtt_v5.aws modules on micropython-unix32 (modules from .mpy,
as ``mip`` installs them), for `make bench` (section ``aws``).

Each figure is ``gc.mem_alloc()`` after a collection, before and after the import, in one
interpreter, in the order a device would load them. The baseline already holds what any
device talking TLS to AWS has loaded anyway: ``mqtt_v5.client`` and ``mqtt_v5.tls``
(``TlsConfig``, which the client's transport imports for every TLS connection), and
``mqtt_v5.errors`` (loaded by the client only once an error is raised, but every aws module
raises or extends its classes); their cost is reported apart (``core``). Budgets (issue 9):
the connection preset plus Shadow <= 10 KB; Jobs and Provisioning each <= 8 KB more. The
objects a device makes are measured too: an ``AwsClient`` less a plain ``MqttClient`` with
the same options, a ``Shadow`` with its answer topics registered (no I/O), a ``Jobs``. And
the hot path: bytes allocated per publish by ``MqttClient`` and by ``AwsClient`` (whose
limit checks run on every publish), against the twin's plain listener. And Fleet
Provisioning through JSON and through CBOR: bytes allocated by a CreateKeysAndCertificate
and a CreateCertificateFromCsr round against the twin over mutual TLS, and by decoding the
same answer with each codec (the figures behind JSON being the default: see
mqtt_v5/aws/provisioning.py).

    python tools/bench_aws.py            # table
    python tools/bench_aws.py --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "host_tests", ROOT / "lib", ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

_PER_OP = r"""
import asyncio, gc, json, sys
from mqtt_v5.client import ConnectOptions, MqttClient
from mqtt_v5.aws.connect import AwsClient

async def per_op(c, qos, n=200):
    payload = b"x" * 32
    for _ in range(20):
        await c.publish("bench/aws", payload, qos)
    await asyncio.sleep_ms(20)
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(n):
        await c.publish("bench/aws", payload, qos)
    b = gc.mem_alloc()
    gc.enable()
    return (b - a) // n

async def main(url):
    out = []
    for name, cls in (("MqttClient", MqttClient), ("AwsClient", AwsClient)):
        c = cls(ConnectOptions("bench-aws", keep_alive=300))
        await c.connect(url)
        out.append((name, {"qos0": await per_op(c, 0), "qos1": await per_op(c, 1)}))
        await c.disconnect()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""

BUDGET_PRESET_SHADOW = 10 * 1024
BUDGET_EACH_MORE = 8 * 1024

_SCRIPT = r"""
import gc, json
def m():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()
r = []
a = m()
import mqtt_v5.client
b = m()
import mqtt_v5.tls
c = m()
import mqtt_v5.errors
d = m()
r.append(("core: mqtt_v5.client", b - a))
r.append(("core: mqtt_v5.tls", c - b))
r.append(("core: mqtt_v5.errors", d - c))
# Interned names live in qstr pools, each twice the size of the last, allocated when the
# last one is full: one that happened to fall inside a measured import (a few KB) would be
# charged to it whole, however few names it added. Intern throw-away names until the next
# pool is allocated here, unmeasured: it has room for all the names the imports below add.
for i in range(4000):
    x = m()
    getattr(r, "_q%d" % i, None)
    if m() - x > 1024:
        break
def imp(label, name):
    x = m()
    try:
        __import__(name)
    except ImportError:
        return
    r.append((label, m() - x))
imp("aws preset (mqtt_v5.aws.connect)", "mqtt_v5.aws.connect")
imp("shadow", "mqtt_v5.aws.shadow")
imp("jobs", "mqtt_v5.aws.jobs")
imp("provisioning", "mqtt_v5.aws.provisioning")
imp("cbor", "mqtt_v5.aws.cbor")
imp("ws (WebSocket transport)", "mqtt_v5.ws")
imp("authorizer", "mqtt_v5.aws.authorizer")
imp("doctor", "mqtt_v5.aws.doctor")
from mqtt_v5.client import ConnectOptions, MqttClient
from mqtt_v5.aws.connect import AwsClient
from mqtt_v5.aws.shadow import Shadow
from mqtt_v5.aws.jobs import Jobs
warm = MqttClient(ConnectOptions("warm-up"))
x = m()
plain = MqttClient(ConnectOptions("weather-sensor-001"))
y = m()
client = AwsClient(ConnectOptions("weather-sensor-001", keep_alive=300))
z = m()
r.append(("object: AwsClient over MqttClient", (z - y) - (y - x)))
x = m()
s = Shadow(client)
s._subscribed = ["get/accepted", "get/rejected", "update/accepted", "update/rejected",
                 "update/delta"]
r.append(("object: Shadow", m() - x))
x = m()
j = Jobs(client)
r.append(("object: Jobs", m() - x))
print(json.dumps(r))
"""


def measure(port: str = "unix32") -> dict:
    import mp_unix

    if mp_unix.binary(port) is None:
        raise RuntimeError(mp_unix.why_missing())
    proc = mp_unix.run_script(port, _SCRIPT, mpy=True, heapsize="1m")
    return dict(mp_unix.last_json(proc))


def measure_per_publish(port: str = "unix32") -> dict:
    """Bytes allocated per publish (QoS 0, QoS 1 with its PUBACK) by a plain
    ``MqttClient`` and by an ``AwsClient`` (its limit checks on the hot path), on the unix
    port against the twin's plain listener (no TLS: the figures are the clients')."""
    import asyncio
    import tempfile
    import threading

    import mp_unix

    from iot_twin.server import Limits
    from iot_twin.twin import Twin

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as data:
        # AWS's per-connection throttles off: the figures are about the client
        limits = Limits.unthrottled()
        twin = Twin(data, plain_port=0, listeners=("plain",), admin=False, limits=limits)
        asyncio.run_coroutine_threadsafe(twin.start(), loop).result(30)
        try:
            url = f"mqtt://127.0.0.1:{twin.ports['plain']}"
            proc = mp_unix.run_script(port, _PER_OP, mpy=True, heapsize="1m", args=[url])
            return dict(mp_unix.last_json(proc))
        finally:
            asyncio.run_coroutine_threadsafe(twin.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)


def budgets(heap: dict) -> dict:
    """The issue's budgets checked against ``measure()``'s figures: ``{name: {"bytes",
    "budget", "ok"}}``. tools/bench.py exits non-zero when one is not ok."""
    preset_shadow = heap["aws preset (mqtt_v5.aws.connect)"] + heap["shadow"]
    out = {}
    for name, used, budget in (("preset + shadow", preset_shadow, BUDGET_PRESET_SHADOW),
                               ("jobs", heap["jobs"], BUDGET_EACH_MORE),
                               ("provisioning", heap["provisioning"], BUDGET_EACH_MORE)):
        out[name] = {"bytes": used, "budget": budget, "ok": used <= budget}
    return out


_PROVISIONING = r"""
import asyncio, gc, json, sys
from mqtt_v5.aws.connect import aws_client
from mqtt_v5.aws.provisioning import PROVISIONING_PACKET_SIZE, Provisioner

def m():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()

async def one(p, csr):
    if csr is None:
        return await p.create_keys_and_certificate()
    return await p.create_certificate_from_csr(csr)

async def main(host, port, ca, cert, key, csr_path, n, answer_json, answer_cbor):
    with open(csr_path) as f:
        csr = f.read()
    c = aws_client(host, "fleet-claim", cert=cert, key=key, ca=ca, port=int(port),
                   server_hostname="localhost", clean_start=True, session_expiry_interval=0,
                   maximum_packet_size=PROVISIONING_PACKET_SIZE)
    await c.connect()
    out = {}
    for fmt in ("json", "cbor"):
        p = Provisioner(c, None, fmt=fmt)
        for name, arg in (("CreateKeysAndCertificate", None), ("CreateCertificateFromCsr", csr)):
            await one(p, arg)  # warm-up: the answer subscriptions, the codec's import
            total = 0
            for _ in range(int(n)):
                m()
                gc.disable()
                a = gc.mem_alloc()
                doc = await one(p, arg)
                b = gc.mem_alloc()
                gc.enable()
                total += b - a
                doc = None
            out[fmt + " " + name] = {"round_allocated": total // int(n)}
    await c.disconnect()
    # the codecs alone, on the same CreateKeysAndCertificate answer
    from mqtt_v5.aws.cbor import loads
    for fmt, path, dec in (("json", answer_json, json.loads), ("cbor", answer_cbor, loads)):
        with open(path, "rb") as f:
            data = f.read()
        m()
        gc.disable()
        a = gc.mem_alloc()
        doc = dec(data)
        b = gc.mem_alloc()
        gc.enable()
        out[fmt + " CreateKeysAndCertificate"]["answer_bytes"] = len(data)
        out[fmt + " CreateKeysAndCertificate"]["decode_allocated"] = b - a
        doc = None
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
"""


def measure_provisioning(port: str = "unix32", rounds: int = 3) -> dict:
    """Bytes allocated by one provisioning round (request, answer, decoding) on the unix
    port, through JSON and through CBOR, against the twin over mutual TLS: every byte
    allocated from the PUBLISH to the decoded answer (the GC off, so garbage counts), and
    the decoded answer's heap while it is held."""
    import asyncio
    import tempfile
    import threading

    import mp_unix
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from iot_twin import cbor as twin_cbor
    from iot_twin.twin import Twin

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as data:
        twin = Twin(data, mtls_port=0, listeners=("mtls",), admin=False)
        asyncio.run_coroutine_threadsafe(twin.start(), loop).result(30)
        try:
            claim = asyncio.run_coroutine_threadsafe(
                _acall(twin.add_thing, "fleet-claim"), loop).result(30)
            key = ec.generate_private_key(ec.SECP256R1())
            csr = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))
                   .sign(key, hashes.SHA256()))
            csr_path = Path(data) / "device.csr"
            csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
            # one CreateKeysAndCertificate answer as AWS sends it in each format
            answer = twin.services.provisioning.create_keys_and_certificate()
            answers = Path(data) / "answer.json", Path(data) / "answer.cbor"
            answers[0].write_bytes(json.dumps(answer).encode())
            answers[1].write_bytes(twin_cbor.dumps(answer))
            proc = mp_unix.run_script(
                port, _PROVISIONING, mpy=True, heapsize="1m",
                args=["127.0.0.1", twin.ports["mtls"], twin.ca_path, claim.cert_path,
                      claim.key_path, csr_path, rounds, *answers])
            return dict(mp_unix.last_json(proc))
        finally:
            asyncio.run_coroutine_threadsafe(twin.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)


async def _acall(fn, *args):
    return fn(*args)


def bench_aws(results: dict) -> None:
    """Fill ``results`` with the heap figures, the budget checks and the bytes allocated
    per publish."""
    results["per_publish_bytes"] = measure_per_publish()
    r = measure()
    results["heap_bytes"] = r
    results["budget"] = budgets(r)
    results["provisioning_json_vs_cbor"] = measure_provisioning()


def _table(results: dict) -> str:
    lines = ["heap kept after import, micropython-unix32, .mpy (bytes):"]
    for k, v in results["heap_bytes"].items():
        lines.append(f"  {k:<40} {v:>8,}")
    lines.append("bytes allocated per publish (unix32, .mpy, plain TCP to the twin):")
    for k, v in results.get("per_publish_bytes", {}).items():
        lines.append(f"  {k:<40} QoS 0: {v['qos0']:>5}   QoS 1: {v['qos1']:>5}")
    prov = results.get("provisioning_json_vs_cbor", {})
    if prov:
        lines.append("fleet provisioning round, JSON vs CBOR (unix32, .mpy, mTLS to the twin; "
                     "bytes allocated):")
        for k, v in sorted(prov.items()):
            extra = "".join(f"   {c}: {v[c]:>5}" for c in ("answer_bytes", "decode_allocated")
                            if c in v)
            lines.append(f"  {k:<40} round: {v['round_allocated']:>6}{extra}")
    lines.append("budgets:")
    for k, v in results["budget"].items():
        lines.append(f"  {k:<40} {v['bytes']:>8,} / {v['budget']:,}  "
                     f"{'ok' if v['ok'] else 'OVER'}")
    return "\n".join(lines)


bench_aws.table = _table  # type: ignore[attr-defined]


if __name__ == "__main__":
    out: dict = {}
    bench_aws(out)
    print(json.dumps(out, indent=2) if "--json" in sys.argv else _table(out))
