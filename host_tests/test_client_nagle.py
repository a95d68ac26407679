"""TCP_NODELAY follows the packet kind: Nagle's algorithm on while the client writes QoS 0
PUBLISHes (a write then only appends to the kernel's buffer, and a run of them leaves in
few segments), TCP_NODELAY on for every packet someone waits for (QoS 1/2 PUBLISH, our
PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ): Linux then sends at once what Nagle held, so
such a packet never waits behind a QoS 0 segment for the peer's delayed ACK.

Read from the kernel, on real sockets to the suite's Mosquitto: on CPython with
getsockopt on the client's socket; on MicroPython's unix port (whose socket has no
getsockopt) by the test, on a duplicate of the script's fd (pidfd_getfd) while the script
waits. How much faster it makes what is the benchmark's business (`make bench`: "QoS 0
written", "QoS 0 then QoS 1"), not these tests'.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import threading

import mp_unix
import pytest
from client_kit import Paho, unique, wait_until

from mqtt_v5.client import ConnectOptions, MqttClient, ReconnectConfig

pytestmark = pytest.mark.broker

NO_RECONNECT = ReconnectConfig(enabled=False)


def _nodelay(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _tcp_socket(client):
    """The kernel socket under the client's stream (asyncio's, under TLS too)."""
    return client._transport._s._t.get_extra_info("socket")


@pytest.mark.parametrize("listener", ["plain", "tls"])
async def test_nodelay_follows_the_packet_kind(mosquitto, pki, listener):
    """After connect TCP_NODELAY is on; a QoS 0 publish turns it off (and the next leaves
    it off); QoS 1, QoS 2, SUBSCRIBE, UNSUBSCRIBE, the PUBACK of an incoming QoS 1 and the
    keep-alive's PINGREQ each turn it on again. Every message reached the broker, in order."""
    from mqtt_v5 import TlsConfig

    root = unique("nagle")
    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(root + "/out", qos=1)
    tls = TlsConfig(ca=pki.ca) if listener == "tls" else None
    port = mosquitto.tls_port if tls else mosquitto.plain_port
    # batch_writes=False: a device's default (CPython's batches: see the test below)
    c = MqttClient(ConnectOptions(root, tls=tls, keep_alive=60, batch_writes=False,
                                  reconnect_config=NO_RECONNECT))
    p = MqttClient(ConnectOptions(root + "-ka", keep_alive=1, batch_writes=False,
                                  reconnect_config=NO_RECONNECT))
    got = []
    seen = []
    n = 0

    async def pub(qos):
        nonlocal n
        n += 1
        await c.publish(root + "/out", b"%d" % n, qos=qos)

    try:
        await c.connect(f"mqtt{'s' if tls else ''}://localhost:{port}")
        s = _tcp_socket(c)
        seen.append(("connected", _nodelay(s)))
        await pub(0)
        seen.append(("qos0", _nodelay(s)))
        await pub(0)
        seen.append(("qos0 again", _nodelay(s)))
        await pub(1)
        seen.append(("qos1", _nodelay(s)))
        await pub(0)
        await pub(2)
        seen.append(("qos2", _nodelay(s)))
        await pub(0)
        await c.subscribe(root + "/in", lambda m: got.append(m.payload), qos=1)
        seen.append(("subscribe", _nodelay(s)))
        await pub(0)
        seen.append(("qos0 before incoming qos1", _nodelay(s)))
        await asyncio.to_thread(paho.publish, root + "/in", b"in", qos=1)
        await wait_until(lambda: got, what="the incoming QoS 1")  # (acked before its callback)
        seen.append(("incoming qos1", _nodelay(s)))
        await pub(0)
        await c.unsubscribe(root + "/in")
        seen.append(("unsubscribe", _nodelay(s)))
        await pub(0)
        seen.append(("qos0 at the end", _nodelay(s)))
        await paho.wait_messages(n, topic=root + "/out")

        # the keep-alive's PINGREQ (nothing else is written on this connection)
        await p.connect(f"mqtt://localhost:{mosquitto.plain_port}")
        ps = _tcp_socket(p)
        await p.publish(root + "/ka", b"0")
        seen.append(("qos0 before pingreq", _nodelay(ps)))
        await wait_until(lambda: _nodelay(ps) == 1, what="the PINGREQ's TCP_NODELAY")
        seen.append(("pingreq", _nodelay(ps)))
    finally:
        await c.disconnect()
        await p.disconnect()
        paho.disconnect()
    assert seen == [("connected", 1), ("qos0", 0), ("qos0 again", 0), ("qos1", 1),
                    ("qos2", 1), ("subscribe", 1), ("qos0 before incoming qos1", 0),
                    ("incoming qos1", 1), ("unsubscribe", 1), ("qos0 at the end", 0),
                    ("qos0 before pingreq", 0), ("pingreq", 1)]
    assert [m.payload for m in paho.received(root + "/out")] == [b"%d" % i
                                                                  for i in range(1, n + 1)]


async def test_batched_qos0_keeps_nodelay(mosquitto):
    """With batch_writes (opt-in on a device, CPython's default) QoS 0 PUBLISHes wait in
    the client and leave together in one write: that write goes with TCP_NODELAY, as
    before."""
    root = unique("nagle-batch")
    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(root, qos=0)
    c = MqttClient(ConnectOptions(root, batch_writes=True, reconnect_config=NO_RECONNECT))
    try:
        await c.connect(f"mqtt://localhost:{mosquitto.plain_port}")
        for i in range(5):
            await c.publish(root, b"%d" % i)
        await paho.wait_messages(5, topic=root)
        assert _nodelay(_tcp_socket(c)) == 1
    finally:
        await c.disconnect()
        paho.disconnect()


# ---------------------------------------------------------------- the unix port --

_SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture since 5.6


def _nodelay_in(pid, fd):
    """TCP_NODELAY of fd ``fd`` of process ``pid``, read on a duplicate of it."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if dup < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(pidfd)
    with socket.socket(fileno=dup) as s:  # (closing the duplicate leaves the original)
        return _nodelay(s)


def _control_server():
    """A loopback listener that answers each of the script's steps once it has read the
    client socket's TCP_NODELAY: [(step, value or the OSError)]."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(120)  # (a script that never calls: the thread ends, the test fails)
    seen = []

    def serve():
        with srv:
            conn, _ = srv.accept()
            with conn, conn.makefile("rb") as f:
                for line in f:
                    pid, fd, name = line.decode().rstrip("\n").split(" ", 2)
                    try:
                        seen.append((name, _nodelay_in(int(pid), int(fd))))
                    except OSError as e:
                        seen.append((name, e))
                    conn.sendall(b"k")

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return srv.getsockname()[1], seen, th


_UNIX_STEPS = [("connected", 1), ("qos0", 0), ("qos0 again", 0), ("qos1", 1),
               ("qos0 before subscribe", 0), ("subscribe", 1), ("qos0 before incoming qos1", 0),
               ("incoming qos1", 1), ("qos0 before unsubscribe", 0), ("unsubscribe", 1),
               ("qos0 before qos2", 0), ("qos2", 1), ("qos0 before ping", 0), ("pingreq", 1)]


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_unix_port_nodelay_follows_the_packet_kind(mp_unix_port, mosquitto, pki, tmp_path,
                                                   listener):
    """The same on MicroPython's unix port (unix32 loads the library as .mpy): the kernel
    option of the client's TCP socket after each step; under TLS the option is set on the
    TCP socket under mbedTLS's (which has no setsockopt)."""
    root = unique("unix-nagle")
    port, seen, th = _control_server()
    tls = listener == "tls"
    params = {"url": f"mqtt{'s' if tls else ''}://localhost:"
                     f"{mosquitto.tls_port if tls else mosquitto.plain_port}",
              "plain_url": f"mqtt://127.0.0.1:{mosquitto.plain_port}",
              "topic": root, "ctl": port, "tls": {"ca": pki.ca} if tls else None}
    arg = tmp_path / f"nagle-{mp_unix_port}.json"
    arg.write_text(json.dumps(params))
    proc = mp_unix.run_script(mp_unix_port, mp_unix.ROOT / "host_tests" / "mp_scripts" /
                              "unix_nagle.py", args=[str(arg)], mpy=mp_unix_port == "unix32")
    report = mp_unix.last_json(proc)
    th.join(10)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert report["error"] is None, report
    denied = [v for _, v in seen if isinstance(v, OSError)]
    if denied:  # (a kernel before 5.6, or ptrace denied by the sandbox)
        pytest.skip(f"this kernel will not let the test read the script's socket: {denied[0]}")
    want = _UNIX_STEPS[:4] if tls else _UNIX_STEPS
    assert seen == want
    assert report["steps"] == [name for name, _ in want]
    assert report["got"] == (0 if tls else 1)
