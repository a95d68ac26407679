"""MqttClient: enhanced authentication (issue 8 item 6) and server redirection and CONNACK
properties (item 7), against scripted brokers (Mosquitto has no AUTH method plug-in here)
and, for where a redirection leads, another scripted broker or the suite's Mosquitto.

The broker's side of each case is written once (``CASES``) and played against the client
on CPython (the script run by ``sys.executable``) and on the unix port (the same script,
host_tests/mp_scripts/unix_auth.py); the in-process tests below cover the rest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import mp_unix
import pytest
from client_kit import Recorder
from conftest import free_port
from hypothesis import example, given
from hypothesis import strategies as st
from netutil import ScriptedBroker

from mqtt_v5 import _rare
from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5.client import (
    Connected,
    ConnectOptions,
    MqttClient,
    ReconnectConfig,
)
from mqtt_v5.errors import MqttError, MqttTimeout, NetworkError, ProtocolError, UsageError

METHOD = "X-CHALLENGE"
FAST = ReconnectConfig(initial_delay=0.05, max_delay=0.2, jitter=0)
AUTH_OPTS = {"auth_method": METHOD, "auth_data": "hello"}


def auth(rc, data=None, method=METHOD):
    props = {P.PROP_AUTHENTICATION_METHOD: method}
    if data is not None:
        props[P.PROP_AUTHENTICATION_DATA] = data
    return codec.Auth(rc, props)


def ref(broker, extra=""):
    return f"127.0.0.1:{broker.port}{extra}"


async def connect_with_auth(conn):
    """The CONNECT must carry our method and data."""
    connect = await conn.expect(codec.CONNECT)
    assert connect.properties[P.PROP_AUTHENTICATION_METHOD] == METHOD
    assert connect.properties[P.PROP_AUTHENTICATION_DATA] == b"hello"


async def challenge(conn, data, prefix):
    """AUTH "continue" with ``data``; the client's answer must be ``prefix + data``."""
    await conn.send_packet(auth(0x18, data))
    reply = await conn.expect(codec.AUTH)
    assert reply.reason_code == 0x18
    assert reply.properties == {P.PROP_AUTHENTICATION_METHOD: METHOD,
                                P.PROP_AUTHENTICATION_DATA: prefix + data}


async def accept_plain(broker, connack=None):
    conn = await broker.accept()
    await conn.expect(codec.CONNECT)
    await conn.send_packet(connack or codec.Connack(0))
    return conn


async def goodbye(conn):
    """The client ends the case with DISCONNECT 0 (or closes)."""
    got = await conn.read_packet()
    assert got is None or got[0] >> 4 == codec.DISCONNECT, got
    conn.close()


# ---------------------------------------------------- the broker's side, per case --


def _auth_at_connect(prefix):
    async def serve(a, b):
        conn = await a.accept()
        await connect_with_auth(conn)
        for data in (b"one", b"two"):
            await challenge(conn, data, prefix)
        await conn.send_packet(codec.Connack(0, False, {P.PROP_AUTHENTICATION_METHOD: METHOD,
                                                         P.PROP_AUTHENTICATION_DATA: b"proof"}))
        await goodbye(conn)
    return serve


async def _auth_refused(a, b):
    conn = await a.accept()
    await connect_with_auth(conn)
    await challenge(conn, b"one", b"answer:")
    await conn.send_packet(codec.Connack(0x8C, False, {P.PROP_REASON_STRING: "no"}))
    conn.close()


async def _on_auth_raises(a, b):
    conn = await a.accept()
    await connect_with_auth(conn)
    await conn.send_packet(auth(0x18, b"proof"))
    assert (await conn.expect(codec.DISCONNECT)).reason_code == 0x80
    conn.close()


async def _wrong_method(a, b):
    conn = await a.accept()
    await connect_with_auth(conn)
    await conn.send_packet(auth(0x18, b"x", method="OTHER"))  # [MQTT-4.12.0-5]
    assert (await conn.expect(codec.DISCONNECT)).reason_code == 0x82
    conn.close()


async def _auth_to_plain_client(a, b):
    """[MQTT-4.12.0-6] no AUTH to a client that asked for no enhanced authentication."""
    conn = await a.accept()
    await conn.expect(codec.CONNECT)
    await conn.send_packet(auth(0x18, b"x", method="ANY"))
    assert (await conn.expect(codec.DISCONNECT)).reason_code == 0x82
    conn.close()


async def _reauth(a, b):
    conn = await accept_plain(a)
    first = await conn.expect(codec.AUTH)
    assert first.reason_code == 0x19
    assert first.properties == {P.PROP_AUTHENTICATION_METHOD: METHOD,
                                P.PROP_AUTHENTICATION_DATA: b"again"}
    await challenge(conn, b"c" * 600, b"async:")  # an answer longer than the send buffer
    await conn.send_packet(auth(0, b"verifier"))
    bad = await conn.expect(codec.AUTH)
    assert (bad.reason_code, bad.properties[P.PROP_AUTHENTICATION_DATA]) == (0x19, b"bad")
    await conn.send_packet(codec.Disconnect(0x87))
    conn.close()


async def _unsolicited_auth(a, b):
    """Only the client starts a re-authentication (4.12.1)."""
    conn = await accept_plain(a)
    await conn.send_packet(auth(0x18, b"x"))
    assert (await conn.expect(codec.DISCONNECT)).reason_code == 0x82
    conn.close()


CONNACK_PROPS = {P.PROP_ASSIGNED_CLIENT_IDENTIFIER: "given-id",
                 P.PROP_RESPONSE_INFORMATION: "resp/base",
                 P.PROP_REASON_STRING: "welcome",
                 P.PROP_USER_PROPERTY: [("region", "here"), ("tier", "1")]}


async def _connack_props(a, b):
    conn = await accept_plain(a, codec.Connack(0, False, CONNACK_PROPS))
    await goodbye(conn)


def _connack_redirect(rc, follow):
    async def serve(a, b):
        await accept_plain(a, codec.Connack(rc, False, {
            P.PROP_SERVER_REFERENCE: ref(b, " 127.0.0.1:1")}))  # a list: the first counts
        if follow:
            await goodbye(await accept_plain(b))
    return serve


async def _disconnect_redirect(a, b):
    conn = await accept_plain(a)
    await conn.send_packet(codec.Disconnect(0x9C, {P.PROP_SERVER_REFERENCE: ref(b),
                                                   P.PROP_REASON_STRING: "maintenance"}))
    conn.close()
    await goodbye(await accept_plain(b, codec.Connack(0, False, {
        P.PROP_RESPONSE_INFORMATION: "at b"})))


async def _redirect_loop(a, b):
    """a sends the client to b, b to a, ...: 1 + MAX_HOPS connections, then it gives up."""
    for i in range(1 + _rare.MAX_HOPS):
        here, there = (a, b) if i % 2 == 0 else (b, a)
        conn = await accept_plain(here, codec.Connack(0x9C, False, {
            P.PROP_SERVER_REFERENCE: ref(there)}))
        conn.close()
    for broker in (a, b):
        with pytest.raises(TimeoutError):
            await broker.accept(timeout_s=0.3)


# name: (ConnectOptions keywords, on_auth, action, the broker's side)
CASES = {
    "auth-at-connect": (AUTH_OPTS, "sync", "connect", _auth_at_connect(b"answer:")),
    "auth-async-callback": (AUTH_OPTS, "async", "connect", _auth_at_connect(b"async:")),
    "auth-refused": (AUTH_OPTS, "sync", "connect", _auth_refused),
    "on-auth-raises": (AUTH_OPTS, "raise", "connect", _on_auth_raises),
    "auth-wrong-method": (AUTH_OPTS, "sync", "connect", _wrong_method),
    "auth-to-plain-client": ({}, None, "connect", _auth_to_plain_client),
    "reauth": (AUTH_OPTS, "async", "reauth", _reauth),
    "unsolicited-auth": (AUTH_OPTS, "sync", "disconnected", _unsolicited_auth),
    "connack-properties": ({}, None, "connect", _connack_props),
    "connack-redirect": ({"follow_redirects": True}, None, "connect",
                         _connack_redirect(0x9D, True)),
    "connack-redirect-ignored": ({}, None, "connect", _connack_redirect(0x9C, False)),
    "disconnect-redirect": ({"follow_redirects": True}, None, "redirected",
                            _disconnect_redirect),
    "redirect-loop": ({"follow_redirects": True}, None, "connect", _redirect_loop),
}




def check(results, b_url):
    """What the client reported, per case (the broker's side checked itself)."""
    r = {c["name"]: c for c in results}
    for name, c in r.items():
        assert c.get("unexpected") is None, (name, c)

    def err(name):
        e = r[name]["error"]
        return (e["type"], e["rc"]) if e else None

    for name in ("auth-at-connect", "auth-async-callback", "connack-properties",
                 "connack-redirect", "disconnect-redirect", "reauth"):
        assert err(name) is None, (name, r[name])
        assert r[name]["connected"], (name, r[name])
    assert err("auth-refused") == ("ConnectRefused", 0x8C)
    assert err("on-auth-raises") == ("MqttError", 0x80)
    assert "ValueError" in r["on-auth-raises"]["error"]["msg"]
    assert err("auth-wrong-method") == ("ProtocolError", 0x82)
    assert err("auth-to-plain-client") == ("ProtocolError", 0x82)
    assert [(e["type"], e["rc"]) if e else None for e in r["reauth"]["errors"]] == [
        None, ("ConnectRefused", 0x87)]
    assert r["reauth"]["finals"] == ["verifier"]
    assert r["auth-at-connect"]["conn"]["auth_data"] == "proof"
    gone = next(e for e in r["unsolicited-auth"]["events"] if e["kind"] == "Disconnected")
    assert (gone["error"]["type"], gone["error"]["rc"]) == ("ProtocolError", 0x82)
    assert r["connack-properties"]["conn"] == {
        "client_id": "given-id", "auth_data": None, "assigned_client_id": "given-id",
        "response_information": "resp/base",
        "server_reference": None, "reason_string": "welcome",
        "user_properties": [["region", "here"], ["tier", "1"]]}
    assert r["connack-redirect"]["server"] == b_url
    assert err("connack-redirect-ignored") == ("ConnectRefused", 0x9C)
    assert r["connack-redirect-ignored"]["server_reference"].endswith(" 127.0.0.1:1")
    d = r["disconnect-redirect"]
    gone = next(e for e in d["events"] if e["kind"] == "Disconnected")
    assert (gone["rc"], gone["by_server"], gone["reason_string"]) == (0x9C, True, "maintenance")
    assert d["refs"][0] == b_url.split("://")[1]
    assert d["conn"]["response_information"] == "at b"
    assert d["server"] == b_url
    assert err("redirect-loop") == ("ConnectRefused", 0x9C)


async def play(runner):
    """Run the script with ``runner(params)`` (in a thread) while the brokers play each
    case's side; check both."""
    async with ScriptedBroker() as a, ScriptedBroker() as b:
        cases = [{"name": n, "opts": o, "on_auth": cb, "action": act}
                 for n, (o, cb, act, _) in CASES.items()]
        script = asyncio.create_task(asyncio.to_thread(
            runner, {"a": a.url, "b": b.url, "cases": cases}))
        failed = None
        for name, (_, _, _, serve) in CASES.items():
            try:
                await asyncio.wait_for(serve(a, b), 15)
            except Exception as e:
                failed = AssertionError(f"case {name}, the broker's side: {e!r}")
                break
        if failed is not None:
            await a.stop()
            await b.stop()  # the script's next connects fail fast
            try:
                await asyncio.wait_for(script, 60)
            except Exception:
                pass
            raise failed
        report = await asyncio.wait_for(script, 60)
        check(report["cases"], b.url)


async def test_auth_and_redirection_cpython(tmp_path):
    """The script on CPython, as on the unix port."""
    def runner(params):
        arg = tmp_path / "params.json"
        arg.write_text(json.dumps(params))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(mp_unix.LIB), str(mp_unix.ROOT / "host_tests" / "mp_scripts")]))
        proc = subprocess.run([sys.executable, str(
            mp_unix.ROOT / "host_tests" / "mp_scripts" / "unix_auth.py"), str(arg)],
            capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        return mp_unix.last_json(proc)

    await play(runner)


async def test_auth_and_redirection_unix(mp_unix_port, tmp_path):
    """On the unix port (unix32 from .mpy files, as mip installs them; unix64 from .py)."""
    def runner(params):
        arg = tmp_path / f"params-{mp_unix_port}.json"
        arg.write_text(json.dumps(params))
        proc = mp_unix.run_script(
            mp_unix_port, mp_unix.ROOT / "host_tests" / "mp_scripts" / "unix_auth.py",
            args=[str(arg)], mpy=mp_unix_port == "unix32")
        report = mp_unix.last_json(proc)
        assert "crash" not in report, proc.stdout + proc.stderr
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return report

    await play(runner)


# ------------------------------------------------------------- in-process tests --


def auth_client(**kw):
    kw.setdefault("reconnect_config", ReconnectConfig(enabled=False))
    kw.setdefault("on_auth", lambda data: b"answer:" + data)
    kw.setdefault("connect_timeout", 3)
    return MqttClient(ConnectOptions("authed", auth_method=METHOD, auth_data=b"hello", **kw))


async def connected_pair(broker, client):
    task = asyncio.create_task(client.connect(broker.url))
    conn = await accept_plain(broker)
    await asyncio.wait_for(task, 3)
    return conn


async def test_reauthentication_one_at_a_time_and_bounded():
    """A second reauthenticate() while one is under way is a UsageError; a server that
    never answers: MqttTimeout after connect_timeout, and the link is given up (its
    state is unknown); disconnect() meanwhile ends it at once; without an
    authentication method: UsageError."""
    async with ScriptedBroker() as broker:
        c = auth_client(connect_timeout=0.5)
        conn = await connected_pair(broker, c)
        first = asyncio.create_task(c.reauthenticate(b"x"))
        await conn.expect(codec.AUTH)
        with pytest.raises(UsageError):
            await c.reauthenticate(b"y")
        with pytest.raises(MqttTimeout):
            await asyncio.wait_for(first, 3)
        assert await conn.wait_closed(3)
        assert not c.is_connected
        await c.disconnect()
        # disconnect() during a re-authentication: it ends at once, with a NetworkError
        c = auth_client()
        conn = await connected_pair(broker, c)
        again = asyncio.create_task(c.reauthenticate(b"x"))
        await conn.expect(codec.AUTH)
        await c.disconnect()
        with pytest.raises(NetworkError, match="disconnected"):
            await asyncio.wait_for(again, 0.5)
        plain = MqttClient(ConnectOptions())
        with pytest.raises(UsageError):
            await plain.reauthenticate()


async def test_success_auth_before_connack_is_a_protocol_error():
    """At connect, success is a CONNACK; AUTH 0x00 (or 0x19, the client's) is refused."""
    for rc in (0x00, 0x19):
        async with ScriptedBroker() as broker:
            c = auth_client()
            task = asyncio.create_task(c.connect(broker.url))
            conn = await broker.accept()
            await connect_with_auth(conn)
            await conn.send_packet(auth(rc))
            with pytest.raises(ProtocolError) as e:
                await asyncio.wait_for(task, 3)
            assert e.value.reason_code == 0x82
            assert (await conn.expect(codec.DISCONNECT)).reason_code == 0x82


async def test_auth_failure_while_connected_goes_to_the_reconnect():
    """on_auth failing during a re-authentication: DISCONNECT 0x80, the caller gets the
    MqttError naming it, the client reconnects (authenticating from the start)."""
    def picky(data):
        if data == b"evil":
            raise ValueError("bad proof")
        return b"ok"

    rec = Recorder()
    async with ScriptedBroker() as broker:
        c = auth_client(on_auth=picky, reconnect_config=FAST)
        c.on_connection_event(rec)
        conn = await connected_pair(broker, c)
        again = asyncio.create_task(c.reauthenticate(b"r"))
        await conn.expect(codec.AUTH)
        await conn.send_packet(auth(0x18, b"evil"))
        assert (await conn.expect(codec.DISCONNECT)).reason_code == 0x80
        with pytest.raises(MqttError) as e:
            await asyncio.wait_for(again, 3)
        assert "bad proof" in str(e.value)
        conn2 = await broker.accept()
        await connect_with_auth(conn2)
        await conn2.send_packet(codec.Connack(0))
        await rec.wait(Connected, 2)
        await c.disconnect()


async def test_connack_redirection_to_mosquitto(mosquitto):
    async with ScriptedBroker() as broker:
        c = MqttClient(ConnectOptions(connect_timeout=3, follow_redirects=True,
                                      reconnect_config=ReconnectConfig(enabled=False)))
        task = asyncio.create_task(c.connect(broker.url))
        await accept_plain(broker, codec.Connack(0x9D, False, {
            P.PROP_SERVER_REFERENCE: f"127.0.0.1:{mosquitto.plain_port}"}))
        await asyncio.wait_for(task, 5)
        assert await c.subscribe("redirect/x", qos=1) == 1  # Mosquitto answers
        await c.disconnect()


async def test_use_another_server_is_temporary_server_moved_is_not():
    """DISCONNECT 0x9C to a server that is down: the next attempt goes back to the first
    server. DISCONNECT 0x9D: the new server is home from then on (a lost link comes
    back to it)."""
    rec = Recorder()
    async with ScriptedBroker() as a, ScriptedBroker() as b:
        c = MqttClient(ConnectOptions(connect_timeout=1, follow_redirects=True,
                                      reconnect_config=FAST))
        c.on_connection_event(rec)
        conn = await connected_pair(a, c)
        await conn.send_packet(codec.Disconnect(0x9C, {
            P.PROP_SERVER_REFERENCE: f"127.0.0.1:{free_port()}"}))  # nobody there
        conn.close()
        conn = await accept_plain(a)  # back home
        await rec.wait(Connected, 2)
        await conn.send_packet(codec.Disconnect(0x9D, {P.PROP_SERVER_REFERENCE: ref(b)}))
        conn.close()
        conn = await accept_plain(b)
        await rec.wait(Connected, 3)
        conn.reset()  # the link breaks: the client comes back to b
        conn = await accept_plain(b)
        await rec.wait(Connected, 4)
        assert c.status()["server"] == b.url
        await c.disconnect()
        await goodbye(conn)


@pytest.mark.parametrize(("target", "reference", "url"), [
    ("mqtt://a:1883", "b:1884", "mqtt://b:1884"),
    ("mqtts://a:8883", "mqtt://b:1884", "mqtts://b:1884"),  # never from TLS to plain
    ("mqtt://a", "b c:2", "mqtt://b"),
    ("mqtt://a", " [::1]:1884", "mqtt://[::1]:1884"),
    ("wss://a:443/mqtt", "b:8443", "wss://b:8443/mqtt"),
    ("a:1", "b:2", "b:2"),
    ("mqtt://a", ":1884", None),
    ("mqtt://a", "  ", None),
])
def test_server_reference_to_url(target, reference, url):
    assert _rare.redirected(target, reference) == url



@example("[]:1")
@example("b/c")
@example("mqtt://")
@given(st.text(max_size=40))
def test_any_server_reference_is_followed_or_refused(reference):
    """Whatever a server puts in Server Reference: a URL the transport parses, or not
    followed (back home), never an exception."""
    from types import SimpleNamespace

    from mqtt_v5.transport import parse_url

    c = SimpleNamespace(_target="mqtts://home:8883", _home="mqtts://home:8883", _hops=0)
    if _rare.follow(c, 0x9C, reference):
        host, _port, tls = parse_url(c._target)
        assert tls
        assert host
    else:
        assert c._target == "mqtts://home:8883"


async def test_publishing_while_an_async_on_auth_runs():
    """The reader waits for a coroutine on_auth; publishes made meanwhile go out whole
    and the answer follows them (the send buffer is not overwritten)."""
    release = asyncio.Event()

    async def slow(data):
        await release.wait()
        return b"late:" + data

    async with ScriptedBroker() as broker:
        c = auth_client(on_auth=slow)
        conn = await connected_pair(broker, c)
        again = asyncio.create_task(c.reauthenticate(b"r"))
        await conn.expect(codec.AUTH)
        await conn.send_packet(auth(0x18, b"c"))
        await asyncio.sleep(0.05)  # on_auth is running
        sent = [asyncio.create_task(c.publish("t/x", b"p%d" % i, qos=0)) for i in range(5)]
        await asyncio.gather(*sent)
        release.set()
        for i in range(5):
            pub = await conn.expect(codec.PUBLISH)
            assert pub.payload == b"p%d" % i
        reply = await conn.expect(codec.AUTH)
        assert reply.properties[P.PROP_AUTHENTICATION_DATA] == b"late:c"
        await conn.send_packet(auth(0))
        assert await asyncio.wait_for(again, 3) is None
        await c.disconnect()
