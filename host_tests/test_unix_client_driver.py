"""The client's drivers on MicroPython's unix port (real sockets, mbedTLS) against the suite's
Mosquitto, and the same cases on CPython where they involve sockets or time.

Each MicroPython case runs a script from host_tests/mp_scripts/ (driver_*.py) or one built here,
and reads the JSON object it prints last.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import mp_unix
import pytest

ROOT = Path(__file__).resolve().parent.parent
SYNC = ROOT / "lib" / "mqtt_v5" / "sync_client.py"


# ------------------------------------------------------------------------------------------
# Item 0: the REPL session in sync_client.py's docstring, as written, on the unix port


def repl_session() -> list[tuple[str, list[str]]]:
    """(statement, expected output lines) for each ``>>>`` line of sync_client.py's docstring."""
    doc = ast.get_docstring(ast.parse(SYNC.read_text()))
    steps: list[tuple[str, list[str]]] = []
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith(">>> "):
            steps.append((s[4:], []))
        elif steps and s and not s.startswith("$") and not steps[-1][1] and line.startswith(" "):
            steps[-1][1].append(s)
        elif not s and steps:
            steps.append(("", []))  # a blank line ends the session's output
    return [(stmt, out) for stmt, out in steps if stmt]


def repl_script(url: str, tls_expr: str | None) -> tuple[str, list[str | None]]:
    """A script that runs the REPL session against ``url`` (the docstring's broker address
    replaced), printing the repr of each expression's value (None when it has none) as a JSON
    list. Returns (script, expected reprs)."""
    lines = ["import json", "_seen = []", "def _show(v):",
             "    _seen.append(None if v is None else repr(v))"]
    if tls_expr:
        lines.append("from mqtt_v5.tls import TlsConfig")
    expected: list[str | None] = []
    for stmt, out in repl_session():
        node = ast.parse(stmt).body[0]
        code = ast.unparse(node)
        if "connect(" in code and "disconnect" not in code:  # the docstring's broker
            code = re.sub(r"'mqtts?://[^']*'", repr(url), code)
            if tls_expr:
                code = code[:-1] + ", tls=" + tls_expr + ")"
        if isinstance(node, ast.Expr):
            lines.append("_show(" + code + ")")
            expected.append(out[0] if out else None)
        else:
            lines.append(code)
    lines.append("print(json.dumps(_seen))")
    return "\n".join(lines) + "\n", expected


def test_repl_session_is_in_the_docstring():
    steps = repl_session()
    stmts = [s for s, _ in steps]
    assert any(s.startswith("c.connect(") for s in stmts)
    assert any(s.startswith("c.wait_msg(") for s in stmts)
    assert stmts[-1] == "c.disconnect()"


def _repl_case(mosquitto, pki, mode):
    if mode == "plain":
        return f"mqtt://127.0.0.1:{mosquitto.plain_port}", None
    if mode == "tls":
        return f"mqtts://127.0.0.1:{mosquitto.tls_port}", f"TlsConfig(ca={pki.ca_der!r})"
    return (
        f"mqtts://127.0.0.1:{mosquitto.mtls_port}",
        f"TlsConfig(ca={pki.ca_der!r}, cert={pki.client_cert_der!r}, key={pki.client_key_der!r})",
    )


@pytest.mark.parametrize("mode", ["plain", "tls", "mtls"])
def test_sync_repl_session_unix_port(mp_unix_port, mosquitto, pki, mode):
    url, tls = _repl_case(mosquitto, pki, mode)
    script, expected = repl_script(url, tls)
    proc = mp_unix.run_script(mp_unix_port, script, heapsize="1m", timeout=60)
    assert mp_unix.last_json(proc) == expected, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["plain", "mtls"])
def test_sync_repl_session_cpython(mosquitto, pki, mode):
    url, tls = _repl_case(mosquitto, pki, mode)
    script, expected = repl_script(url, tls)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "lib")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


# ------------------------------------------------------------------------------------------
# Item 3 (blocking client) and item 0's "a timeout is not a certificate problem": a server
# that accepts TCP and then says nothing


@pytest.fixture
def silent_server():
    """A listening socket nobody accepts from: TCP connects (the kernel completes it), then
    nothing is ever said, in TLS or MQTT."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


SILENT_SYNC = """
import json, sys
from mqtt_v5.sync_client import SyncClient
from mqtt_v5.tls import TlsConfig
from mqtt_v5._compat import ticks_ms, ticks_diff
port, mode, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = SyncClient("silent", connect_timeout=1)
t0 = ticks_ms()
try:
    if mode == "tls":
        c.connect("mqtts://127.0.0.1:%d" % port, tls=TlsConfig(ca=ca))
    else:
        c.connect("mqtt://127.0.0.1:%d" % port)
    out = {"error": None}
except Exception as e:
    out = {"error": type(e).__name__, "text": str(e)}
out["ms"] = ticks_diff(ticks_ms(), t0)
print(json.dumps(out))
"""


def _check_silent(out):
    assert out["error"] in ("NetworkError", "MqttTimeout"), out
    assert out["ms"] < 5000, out
    assert "certificate" not in out["text"], out


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_sync_connect_to_a_silent_server_times_out_unix_port(
    mp_unix_port, silent_server, pki, mode
):
    proc = mp_unix.run_script(
        mp_unix_port, SILENT_SYNC, args=[silent_server, mode, pki.ca_der], timeout=30
    )
    _check_silent(mp_unix.last_json(proc))


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_sync_connect_to_a_silent_server_times_out_cpython(silent_server, pki, mode):
    proc = subprocess.run(
        [sys.executable, "-c", SILENT_SYNC, str(silent_server), mode, pki.ca],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(ROOT / "lib")},
    )
    _check_silent(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------
# Items 1-4: mp_scripts/driver_cases.py, the same script on the unix port and on CPython

from netutil import FaultProxies  # noqa: E402

SCRIPTS = ROOT / "host_tests" / "mp_scripts"
RUNTIMES = ["cpython", "unix32", "unix64"]


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    if request.param != "cpython" and mp_unix.binary(request.param) is None:
        pytest.skip(mp_unix.why_missing())
    return request.param


@pytest.fixture
def fault_proxy():
    with FaultProxies() as make:
        yield make


class Case:
    """driver_cases.py CASE URL ARGS on one runtime; ``step()`` waits for its "ready" line,
    the test acts, then ``go()`` lets it continue; ``result()`` is its JSON."""

    def __init__(self, runtime, case, url, *args, heapsize="1m"):
        if runtime == "cpython":
            cmd = [sys.executable, str(SCRIPTS / "driver_cases.py")]
            env = {"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"}
        else:
            cmd = [str(mp_unix.binary(runtime)), "-X", f"heapsize={heapsize}",
                   str(SCRIPTS / "driver_cases.py")]
            env = {"MICROPYPATH": f"{ROOT / 'lib'}:.frozen"}
        self.proc = subprocess.Popen(
            [*cmd, case, url, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env,
        )

    def step(self, timeout=20):
        import select

        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else ""
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"no 'ready' ({line!r}): {self.proc.stderr.read()}")

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout=60):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"the script hung:\n{out}\n{err}") from None
        lines = out.strip().splitlines()
        assert self.proc.returncode == 0, f"{out}\n{err}"
        assert lines, err
        return json.loads(lines[-1])


def test_dropped_or_cancelled_publish_does_not_jam(runtime, mosquitto):
    r = Case(runtime, "dropped", f"mqtt://127.0.0.1:{mosquitto.plain_port}").result()
    assert r == {"after_dropped": r["after_dropped"], "after_cancelled": r["after_cancelled"],
                 "got_last": True, "next_connection": r["next_connection"]}, r
    assert all(isinstance(r[k], int) and r[k] > 0
               for k in ("after_dropped", "after_cancelled", "next_connection")), r


def test_dropped_publish_while_a_write_is_held(runtime, mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    case = Case(runtime, "dropped_held", proxy.url)
    case.step()
    proxy.stall(3)
    case.go()
    r = case.result()
    assert r["filled"], r
    assert isinstance(r["after"], int), r
    assert r["after"] > 0, r


def test_keepalive_finds_a_dead_link_behind_a_stuck_write(runtime, mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    ka = 2
    case = Case(runtime, "keepalive_stuck_writer", proxy.url, ka)
    case.step()
    proxy.stall()
    case.go()
    r = case.result()
    assert r["lost_after_ms"] is not None, r
    assert r["lost_after_ms"] <= ka * 1500 + 700, r  # 1.5x keep-alive (plus scheduling)
    assert not r["connected"]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_connect_to_a_silent_server_is_bounded(runtime, silent_server, pki, tls):
    args = [pki.ca_der if runtime != "cpython" else pki.ca] if tls else []
    scheme = "mqtts" if tls else "mqtt"
    r = Case(runtime, "silent_connect", f"{scheme}://127.0.0.1:{silent_server}", *args).result()
    assert r["result"].startswith("MqttTimeout"), r
    assert "certificate" not in r["result"], r
    assert r["ms"] < 3000, r


def test_reconnect_goes_on_past_a_silent_server(runtime, mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    case = Case(runtime, "reconnect_silent", proxy.url)
    case.step()
    proxy.stall()
    proxy.cut()
    case.go()
    r = case.result()
    assert r["attempts"][:3] == [1, 2, 3], r


@pytest.mark.parametrize("mode", ["attempts", "disabled"])
def test_publish_after_reconnecting_gave_up_raises_at_once(runtime, mosquitto, fault_proxy, mode):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    case = Case(runtime, "gave_up", proxy.url, mode)
    case.step()
    proxy.refuse(True)
    proxy.cut()
    case.go()
    r = case.result()
    assert r["queued1"] == "NetworkError", r
    assert r["qos0"] == "NetworkError", r
    assert r["qos1"] == "NetworkError", r
    assert r["ms"] < 500, r
    assert r["iterator"] == "ended", r


@pytest.mark.parametrize("qos", [0, 1])
def test_coroutine_callbacks_are_bounded(runtime, mosquitto, qos):
    r = Case(runtime, "callbacks_bounded", f"mqtt://127.0.0.1:{mosquitto.plain_port}",
             qos).result()
    assert r["received"] == 40, r
    assert 1 <= r["most_at_once"] <= 4, r  # receive_maximum


def test_subscription_identifiers_do_not_collide(runtime, mosquitto):
    r = Case(runtime, "sid_collision", f"mqtt://127.0.0.1:{mosquitto.plain_port}").result()
    assert r == {"a": ["/a/x", "/b/x"], "b": ["/b/x"]}


def test_publish_options_take_a_raw_topic_alias_as_the_checked_one():
    """Item 8: a Topic Alias given among raw properties is the alias PublishOptions checks
    against the server's Topic Alias Maximum, not a property that skips the check."""
    from mqtt_v5 import properties as P
    from mqtt_v5.client import PublishOptions

    o = PublishOptions(properties={P.PROP_TOPIC_ALIAS: 3, P.PROP_CONTENT_TYPE: "x"})
    assert o.topic_alias == 3
    assert o.properties == {P.PROP_CONTENT_TYPE: "x"}


# ------------------------------------------------------------------------------------------
# Issue 7, the driver's part: garbage per operation over a real socket (gc off: counts, not
# timings), beside asyncio's own cost of one socket wake-up measured in the same process.


@pytest.mark.parametrize("mpy", [False, True], ids=["py", "mpy"])
def test_garbage_per_operation_unix_port(mp_unix_port, mosquitto, mpy):
    proc = mp_unix.run_script(
        mp_unix_port, SCRIPTS / "driver_garbage.py", args=[mosquitto.plain_port, 40],
        heapsize="1m", mpy=mpy, timeout=60,
    )
    r = mp_unix.last_json(proc)
    floor = r["floor"]  # asyncio: one task woken by its socket
    assert r["qos0"] == 0, r
    assert r["qos0_str"] == 0, r
    assert r["qos0_props"] == 0, r  # a user property given as str
    assert r["qos0_props_bytes"] == 0, r
    assert r["qos1"] <= floor, r  # written at once; the one wake-up is the reader's
    assert r["recv0"] <= floor, r
    assert r["recv1"] <= floor, r  # its PUBACK written at once
    assert r["recv1_props"] <= floor, r
    assert r["idle"] == 0, r


# ------------------------------------------------------------------------------------------
# Items 6, 7, 11 on the unix port: the client in MicroPython, a scripted broker in this test


async def _spawn(runtime, case, url):
    import asyncio

    if runtime == "cpython":
        cmd = [sys.executable, str(SCRIPTS / "driver_cases.py")]
        env = {"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"}
    else:
        cmd = [str(mp_unix.binary(runtime)), "-X", "heapsize=1m",
               str(SCRIPTS / "driver_cases.py")]
        env = {"MICROPYPATH": f"{ROOT / 'lib'}:.frozen"}
    return await asyncio.create_subprocess_exec(
        *cmd, case, url, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env)


async def _result(proc):
    import asyncio

    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0, err.decode()
    assert lines, err.decode()
    return json.loads(lines[-1])


async def test_enhanced_authentication_on_each_runtime(runtime):
    from netutil import ScriptedBroker

    from mqtt_v5 import _server_codec as codec
    from mqtt_v5 import properties as P

    method = {P.PROP_AUTHENTICATION_METHOD: "X-CHALLENGE"}
    async with ScriptedBroker() as broker:
        proc = await _spawn(runtime, "auth", broker.url)
        conn = await broker.accept(10)
        connect = await conn.expect(codec.CONNECT)
        assert connect.properties[P.PROP_AUTHENTICATION_DATA] == b"hello"
        for challenge in (b"one", b"two"):
            await conn.send_packet(codec.Auth(0x18, {**method,
                                                     P.PROP_AUTHENTICATION_DATA: challenge}))
            reply = await conn.expect(codec.AUTH)
            assert reply.properties[P.PROP_AUTHENTICATION_DATA] == b"answer:" + challenge
        await conn.send_packet(codec.Connack(0, False, method))
        again = await conn.expect(codec.AUTH)
        assert again.reason_code == 0x19
        await conn.send_packet(codec.Auth(0x18, {**method, P.PROP_AUTHENTICATION_DATA: b"3"}))
        reply = await conn.expect(codec.AUTH)
        assert reply.properties[P.PROP_AUTHENTICATION_DATA] == b"answer:3"
        await conn.send_packet(codec.Auth(0, method))
        assert await _result(proc) == {"connected": True, "reauthenticated": True}


async def test_redirection_on_each_runtime(runtime, mosquitto):
    from netutil import ScriptedBroker

    from mqtt_v5 import _server_codec as codec
    from mqtt_v5 import properties as P

    async with ScriptedBroker() as broker:
        proc = await _spawn(runtime, "redirect", broker.url)
        conn = await broker.accept(10)
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(0x9D, False, {
            P.PROP_SERVER_REFERENCE: f"127.0.0.1:{mosquitto.plain_port}"}))
        assert await _result(proc) == {"reason_string": None, "granted": 1}


@pytest.mark.parametrize("rc", [0x95, 0x99, 0x9A, 0x9B])
async def test_refusal_retrying_cannot_fix_on_each_runtime(runtime, rc):
    from netutil import ScriptedBroker

    from mqtt_v5 import _server_codec as codec

    async with ScriptedBroker() as broker:
        proc = await _spawn(runtime, "refused_for_good", broker.url)
        conn = await broker.accept(10)
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(0))
        conn.close()
        conn = await broker.accept(10)
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(rc))
        r = await _result(proc)
    kinds = [e[0] for e in r["events"]]
    assert kinds == ["Connected", "Disconnected", "Reconnecting", "Disconnected"], r
    assert r["events"][-1][1] == rc, r
    assert r["publish"] == "ConnectRefused", r
