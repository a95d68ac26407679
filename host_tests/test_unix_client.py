"""MqttClient on MicroPython's unix port (micropython-unix32 and -unix64: real sockets,
mbedTLS), against the suite's Mosquitto, the fault proxy and the scripted hostile broker.

Each test runs one MicroPython process (a script in host_tests/mp_scripts/) that goes
through several cases, and judges by what the other side saw: the broker's log, a paho
consumer's messages, the proxy's connection count, the bytes the scripted broker read, as
well as the script's own report. A missing binary skips (mp_unix.SKIP_REASON), which fails
the run under CI=true.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re

import mp_unix
import pytest
from client_kit import Paho, unique
from netutil import DOWN, UP, FaultProxy

pytestmark = pytest.mark.broker


def run(port, script, params, tmp_path, **kw):
    """Run mp_scripts/<script> on ``port`` with ``params`` (JSON, through a file: the unix
    port cannot take a long argument) and return its report."""
    arg = tmp_path / f"{script}-{port}.json"
    arg.write_text(json.dumps(params))
    proc = mp_unix.run_script(port, mp_unix.ROOT / "host_tests" / "mp_scripts" / script,
                              args=[str(arg)], **kw)
    report = mp_unix.last_json(proc)
    assert "crash" not in report, f"{script} crashed on {port}:\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"{script} on {port}:\n{proc.stdout}\n{proc.stderr}"
    return report


# ------------------------------------------------------------------------------ TLS --


def _pkcs8(pki, tmp_path):
    """The client's RSA key as PKCS#8 ("BEGIN PRIVATE KEY"), PEM and DER, and encrypted."""
    from cryptography.hazmat.primitives import serialization as s

    key = s.load_pem_private_key(pki.read("client_key"), None)
    out = {}
    for name, enc, alg in (("pem", s.Encoding.PEM, s.NoEncryption()),
                           ("der", s.Encoding.DER, s.NoEncryption()),
                           ("enc", s.Encoding.PEM, s.BestAvailableEncryption(b"pw"))):
        path = tmp_path / f"client-pkcs8.{name}"
        path.write_bytes(key.private_bytes(enc, s.PrivateFormat.PKCS8, alg))
        out[name] = str(path)
    return out


# What mosquitto logs when a TLS handshake fails, per refused case below.
_BROKER_SAYS = {
    "untrusted-server": "alert unknown ca",  # our client aborted: unknown CA
    "rogue-client-cert": "certificate verify failed",  # the broker refused our certificate
    "no-client-cert": "peer did not return a certificate",
    "host-mismatch": "alert bad certificate",  # our client aborted: wrong name
}


def test_plain_tls_and_mutual_tls(mp_unix_port, mosquitto, pki, tmp_path):
    """PEM certificates and keys decode on MicroPython to the very DER the PKI wrote, at
    the cost of little more than the DER itself (the unix port's ssl takes only DER).
    Plain TCP, TLS (CA as PEM and as DER, by DNS name and by IP) and mutual TLS
    (certificate and key as PEM files, DER files, PEM or DER bytes; RSA PKCS#1 / PKCS#8 and
    EC SEC1 keys) each connect, publish and disconnect; an untrusted server, a rogue or
    missing client certificate and a host-name mismatch are refused with a NetworkError
    naming the cause, as the broker saw it too; an encrypted key is a UsageError."""
    root = unique("unix-tls")
    p8 = _pkcs8(pki, tmp_path)
    host = mosquitto.host

    def tls(ca=pki.ca, cert=None, key=None, server_hostname=None):
        return {"ca": ca, "cert": cert, "key": key, "server_hostname": server_hostname}

    plain = f"mqtt://{host}:{mosquitto.plain_port}"
    tls_url = f"mqtts://localhost:{mosquitto.tls_port}"
    mtls = f"mqtts://localhost:{mosquitto.mtls_port}"
    ok = {  # name: (url, tls, as_bytes, CN the broker must see)
        "plain": (plain, None, False, None),
        "tls-pem": (tls_url, tls(), False, None),
        "tls-der-by-ip": (f"mqtts://{host}:{mosquitto.tls_port}", tls(pki.ca_der), False, None),
        "mtls-rsa-pem": (mtls, tls(cert=pki.client_cert, key=pki.client_key), False, "t1"),
        "mtls-ec-pem": (mtls, tls(cert=pki.client_ec_cert, key=pki.client_ec_key), False, "t2"),
        "mtls-rsa-der": (mtls, tls(pki.ca_der, pki.client_cert_der, pki.client_key_der),
                         False, "t1"),
        "mtls-ec-der": (mtls, tls(pki.ca_der, pki.client_ec_cert_der, pki.client_ec_key_der),
                        False, "t2"),
        "mtls-pem-bytes": (mtls, tls(cert=pki.client_cert, key=pki.client_key), True, "t1"),
        "mtls-der-bytes": (mtls, tls(pki.ca_der, pki.client_cert_der, pki.client_key_der),
                           True, "t1"),
        "mtls-pkcs8-pem": (mtls, tls(cert=pki.client_cert, key=p8["pem"]), False, "t1"),
        "mtls-pkcs8-der": (mtls, tls(cert=pki.client_cert_der, key=p8["der"]), False, "t1"),
        "wrong-host-named": (f"mqtts://localhost:{mosquitto.wrong_host_port}",
                             tls(server_hostname="wrong.example"), False, None),
    }
    refused = {  # name: (url, tls, error type, words the message must hold)
        "untrusted-server": (tls_url, tls(pki.rogue_ca_der), "NetworkError",
                             ["verification failed", "unknown CA"]),
        "rogue-client-cert": (mtls, tls(cert=pki.rogue_client_cert, key=pki.rogue_client_key),
                              "NetworkError", ["rejected the client certificate"]),
        "no-client-cert": (mtls, tls(), "NetworkError", ["requires a client certificate"]),
        "host-mismatch": (f"mqtts://localhost:{mosquitto.wrong_host_port}", tls(),
                          "NetworkError", ["verification failed", "host name mismatch"]),
        "encrypted-key": (mtls, tls(cert=pki.client_cert, key=p8["enc"]), "UsageError",
                          ["encrypted private keys are not supported"]),
    }
    cases = []
    for name, (url, t, as_bytes, _) in ok.items():
        cases.append({"name": name, "url": url, "tls": t, "as_bytes": as_bytes})
    for name, (url, t, _, _) in refused.items():
        cases.append({"name": name, "url": url, "tls": t})
    for case in cases:
        case["client_id"] = f"{root}-{case['name']}"
        case["topic"] = f"{root}/{case['name']}"

    pem = [[getattr(pki, k), getattr(pki, k + "_der")] for k in (
        "ca", "client_cert", "client_key", "client_ec_key")] + [[p8["pem"], p8["der"]]]

    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(root + "/#", qos=1)
    mark = mosquitto.log_size()
    try:
        report = run(mp_unix_port, "unix_tls.py", {"cases": cases, "pem": pem}, tmp_path)
        for r in report["pem"]:
            assert r["same"], r
            # the DER, plus the list, tuple, label and views: no copy of the PEM text
            assert r["alloc"] <= r["der_len"] + 512, r
        results = {r["name"]: r for r in report["cases"]}
        assert [r for r in results.values() if r["ok"] != (r["name"] in ok)] == []
        for name, (_, _, kind, words) in refused.items():
            err = results[name]["error"]
            assert err["type"] == kind, (name, err)
            for w in words:
                assert w in err["msg"], (name, err["msg"])
            assert "\n" not in err["msg"], (name, err["msg"])
            assert results[name]["connected_after"] is False
        # What the others saw: every accepted case's message reached paho, once...
        msgs = asyncio.run(paho.wait_messages(len(ok), timeout=10))
    finally:
        paho.disconnect()
    assert sorted(m.payload.decode() for m in msgs) == sorted(ok)
    log = mosquitto.log(since=mark)
    # ...the broker saw each accepted client connect (with its certificate's CN) and leave
    # cleanly, and none of the refused ones.
    for name, (_, _, _, cn) in ok.items():
        line = re.search(rf"as {re.escape(root)}-{name} \(([^)]*)\)", log)
        assert line, f"{name} not in the broker log:\n{log}"
        assert (f"u'{cn}'" in line.group(1)) if cn else ("u'" not in line.group(1)), line[0]
        assert f"Client {root}-{name} disconnected.\n" in log, name
    for name in refused:
        assert f"{root}-{name}" not in log, name
    # ...and refused the handshakes for the reasons given, in that order.
    said = re.findall(r"OpenSSL Error\[0\]: \S+ (.*)", log)
    expected = [_BROKER_SAYS[n] for n in refused if n in _BROKER_SAYS]
    assert [next((e for e in expected if e in s), s) for s in said] == expected, said


# ---------------------------------------------------------------------- fault proxy --


class ScheduledCuts(FaultProxy):
    """A FaultProxy that arms ``cut_after_bytes`` itself as each connection is accepted:
    connection k (from 0) is cut after ``schedule[k] = (n, direction)`` bytes, later ones
    run undisturbed. Armed inside the proxy's loop, so however fast the client is, every
    fault lands, and at the same byte offset on every run."""

    def __init__(self, *args, schedule, **kw):
        super().__init__(*args, **kw)
        self.schedule = list(schedule)

    async def _accept(self, cr, cw):
        k = self.connections
        if k < len(self.schedule):
            n, direction = self.schedule[k]
            self._budget[direction] = n
        await super()._accept(cr, cw)


async def test_reset_reconnects_and_resubscribes(mp_unix_port, mosquitto, tmp_path):
    """An RST on the link: the client on the unix port reconnects by itself, subscribes
    again (its own message comes back) and the broker saw two connections."""
    root = unique("unix-reset")
    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(root + "/#", qos=1)
    with FaultProxy(mosquitto.host, mosquitto.plain_port) as proxy:
        params = {"reconnect": {"url": proxy.url, "client_id": root, "topic": root + "/t",
                                "ready_topic": root + "/ready"}}
        script = asyncio.create_task(
            asyncio.to_thread(run, mp_unix_port, "unix_faults.py", params, tmp_path))
        try:
            await paho.wait_messages(1, timeout=20, topic=root + "/ready")
            proxy.reset()
            report = (await asyncio.wait_for(script, 60))["reconnect"]
        finally:
            paho.disconnect()
            if not script.done():
                await asyncio.wait_for(script, 60)
        assert proxy.connections == 2
    kinds = [e["kind"] for e in report["events"]]
    assert kinds == ["Connected", "Disconnected", "Reconnecting", "Connected", "Disconnected"]
    lost = report["events"][1]
    assert lost["error"]["type"] == "NetworkError", lost
    assert not lost["by_server"], lost
    assert report["got"] == ["after"]  # through the renewed subscription
    assert report["after_pid"] > 0
    assert paho.payloads(root + "/t") == [b"after"]


async def test_no_loss_across_cuts(mp_unix_port, mosquitto, tmp_path):
    """QoS 1 and QoS 2 messages published from the unix port while the proxy cuts the link
    five times, mid-packet both ways: a consumer on the broker gets every one, and each
    QoS 2 message once; the client resumed its session each time."""
    root = unique("unix-noloss")
    n = 300
    schedule = [(3000, UP), (700, DOWN), (2001, UP), (333, DOWN), (1501, UP)]
    consumer = Paho(mosquitto.plain_port, unique("consumer"), clean_start=False,
                    session_expiry=60).connect()
    consumer.subscribe(root + "/#", qos=2)
    proxy = ScheduledCuts(mosquitto.host, mosquitto.plain_port, schedule=schedule).start()
    try:
        params = {"noloss": {"url": proxy.url, "client_id": root, "root": root, "n": n}}
        report = (await asyncio.to_thread(run, mp_unix_port, "unix_faults.py", params,
                                          tmp_path))["noloss"]
        msgs = await consumer.wait_messages(2 * n, timeout=20)
        await asyncio.sleep(0.2)  # a late duplicate would show up now
        msgs = consumer.received()
    finally:
        consumer.disconnect()
        proxy.stop()
    assert report["errors"] == []
    assert len(report["pids1"]) == n
    assert all(report["pids1"])
    assert len(report["pids2"]) == n
    assert all(report["pids2"])
    assert proxy.connections == len(schedule) + 1  # every cut happened
    connects = [e for e in report["events"] if e["kind"] == "Connected"]
    assert len(connects) == len(schedule) + 1
    assert all(e["session_present"] for e in connects[1:])
    q1 = collections.Counter(m.payload for m in msgs if m.topic == root + "/q1")
    q2 = collections.Counter(m.payload for m in msgs if m.topic == root + "/q2")
    want = {b"%d" % i for i in range(n)}
    assert set(q1) == want, f"QoS 1 lost {sorted(want - set(q1))[:20]}"
    assert set(q2) == want, f"QoS 2 lost {sorted(want - set(q2))[:20]}"
    assert not {k: v for k, v in q2.items() if v > 1}, "QoS 2 duplicates"
