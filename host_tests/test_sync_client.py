"""SyncClient (mqtt_v5.sync_client), the blocking facade: against the real Mosquitto fixture
(plain, TLS, mutual TLS, password). What a well-behaved broker never does (refusals,
protocol violations) is in portable/test_sync_scripted.py, on both runtimes."""

from __future__ import annotations

import time

import pytest
from client_kit import Paho, unique

from mqtt_v5 import properties as P
from mqtt_v5.errors import ConnectRefused, NetworkError, UsageError
from mqtt_v5.sync_client import Message, SyncClient
from mqtt_v5.tls import TlsConfig

HOST = "127.0.0.1"


def plain(broker):
    return f"mqtt://{HOST}:{broker.plain_port}"


@pytest.fixture
def client():
    made = []

    def make(**kw):
        c = SyncClient(unique("sync"), **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.disconnect()


# ------------------------------------------------------------------------------ Mosquitto --


@pytest.mark.broker
def test_publish_subscribe_round_trip_qos_0_1_2(mosquitto, client):
    c = client()
    assert c.connect(plain(mosquitto)) is False
    assert c.is_connected
    topic = unique("sync-rt")
    assert c.subscribe(topic + "/#", qos=2) == 2
    pids = [c.publish(f"{topic}/{q}", b"m%d" % q, qos=q) for q in (0, 1, 2)]
    assert pids[0] == 0
    assert 0 < pids[1] != pids[2] > 0
    got = [c.wait_msg(5) for _ in range(3)]
    assert all(isinstance(m, Message) for m in got), got
    assert sorted((m.topic, m.payload, m.qos) for m in got) == [
        (f"{topic}/0", b"m0", 0), (f"{topic}/1", b"m1", 1), (f"{topic}/2", b"m2", 2)]
    assert c.check_msg() is None
    c.disconnect()
    assert not c.is_connected
    c.disconnect()  # idempotent


@pytest.mark.broker
def test_messages_from_another_client_and_the_callback(mosquitto, client):
    c = client()
    c.connect(plain(mosquitto))
    topic = unique("sync-in")
    c.subscribe(topic, qos=1)
    paho = Paho(mosquitto.plain_port).connect()
    try:
        paho.publish(topic, b"one", qos=1)
        m = c.wait_msg(5)
        assert (m.topic, m.payload, m.qos) == (topic, b"one", 1)
        seen = []
        c.set_callback(seen.append)
        paho.publish(topic, b"two", qos=1, ContentType="text/plain")
        m = c.wait_msg(5)  # returned and given to the callback
        assert seen == [m]
        assert m.payload == b"two"
        assert m.properties[P.PROP_CONTENT_TYPE] == "text/plain"
    finally:
        paho.disconnect()


@pytest.mark.broker
def test_wait_msg_times_out_and_keep_alive_runs_while_waiting(mosquitto, client):
    c = client(keep_alive=1)
    c.connect(plain(mosquitto))
    t0 = time.monotonic()
    assert c.check_msg() is None
    assert time.monotonic() - t0 < 0.5  # check_msg never waits
    t0 = time.monotonic()
    assert c.wait_msg(2.6) is None  # Mosquitto drops a silent client after 1.5 s
    assert 2.5 <= time.monotonic() - t0 < 4
    assert c.is_connected
    assert c.publish(unique("sync-ka"), b"still here", qos=1) > 0
    c.ping()


@pytest.mark.broker
def test_reconnect_renews_subscriptions_of_a_new_session(mosquitto, client):
    c = client()
    c.connect(plain(mosquitto))
    topic = unique("sync-re")
    c.subscribe(topic)
    c.disconnect()
    assert c.connect(plain(mosquitto)) is False  # a new session: subscribed again
    c.publish(topic, b"back")
    assert c.wait_msg(5).payload == b"back"


@pytest.mark.broker
def test_tls_and_mutual_tls(mosquitto, pki, client):
    c = client()
    c.connect(f"mqtts://localhost:{mosquitto.tls_port}", tls=TlsConfig(ca=pki.ca))
    topic = unique("sync-tls")
    c.subscribe(topic, qos=1)
    assert c.publish(topic, b"secret", qos=1) > 0
    assert c.wait_msg(5).payload == b"secret"
    c.disconnect()
    m = client()
    m.connect(f"mqtts://localhost:{mosquitto.mtls_port}",
              tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key))
    assert m.publish(topic, b"mutual", qos=1) > 0
    m.disconnect()
    with pytest.raises(NetworkError) as e:
        client().connect(f"mqtts://localhost:{mosquitto.mtls_port}", tls=TlsConfig(ca=pki.ca))
    assert "client certificate" in str(e.value)
    with pytest.raises(NetworkError) as e:
        client().connect(f"mqtts://localhost:{mosquitto.tls_port}",
                         tls=TlsConfig(ca=pki.rogue_ca))
    assert "verification failed" in str(e.value)


@pytest.mark.broker
def test_connect_errors_are_typed(mosquitto, client):
    with pytest.raises(ConnectRefused) as e:
        client(username="user", password="wrong").connect(
            f"mqtt://{HOST}:{mosquitto.auth_port}")
    assert e.value.reason_code == 0x87
    c = client(username="user", password="secret")
    c.connect(f"mqtt://{HOST}:{mosquitto.auth_port}")
    assert c.is_connected
    from conftest import free_port

    with pytest.raises(NetworkError):
        client().connect(f"mqtt://{HOST}:{free_port()}", timeout_s=2)
    idle = client()
    with pytest.raises(NetworkError):
        idle.publish("t", b"x")  # not connected
    with pytest.raises(UsageError) as e:
        c.subscribe("a/#/b")
    assert e.value.reason_code == 0x8F
