"""MqttClient over TLS and mutual TLS against Mosquitto, and username/password refusal."""

from __future__ import annotations

import asyncio

import pytest
from client_kit import Paho, unique

from mqtt_v5.client import ConnectOptions, MqttClient, ReconnectConfig
from mqtt_v5.errors import ConnectRefused, NetworkError
from mqtt_v5.tls import TlsConfig

pytestmark = pytest.mark.broker


def client(tls=None, **kw):
    return MqttClient(ConnectOptions(unique("tls"), tls=tls, connect_timeout=5,
                                     reconnect_config=ReconnectConfig(enabled=False), **kw))


async def round_trip(c, broker):
    """Publish through the broker to paho (plain listener) and back."""
    topic = unique("tls-rt")
    paho = Paho(broker.plain_port).connect()
    paho.subscribe(topic, qos=1)
    try:
        assert await c.publish(topic, b"secret", qos=1) > 0
        msgs = await paho.wait_messages(1)
    finally:
        paho.disconnect()
    assert msgs[0].payload == b"secret"


async def test_tls_with_ca(mosquitto, pki):
    for host in ("localhost", "127.0.0.1"):  # DNS and IP subject alternative names
        c = client(TlsConfig(ca=pki.ca))
        await c.connect(f"mqtts://{host}:{mosquitto.tls_port}")
        await round_trip(c, mosquitto)
        await c.disconnect()


@pytest.mark.parametrize("cert", ["client", "client_ec", "client_der"])
async def test_mutual_tls(mosquitto, pki, cert):
    if cert == "client_der":
        tls = TlsConfig(ca=pki.ca_der, cert=pki.client_cert_der, key=pki.client_key_der)
        cn = pki.client_cn
    else:
        tls = TlsConfig(ca=pki.ca, cert=getattr(pki, cert + "_cert"),
                        key=getattr(pki, cert + "_key"))
        cn = pki.client_ec_cn if cert == "client_ec" else pki.client_cn
    c = client(tls)
    mark = mosquitto.log_size()
    await c.connect(f"mqtts://localhost:{mosquitto.mtls_port}")
    await round_trip(c, mosquitto)
    await c.disconnect()
    assert f"u'{cn}'" in mosquitto.log(since=mark)  # the certificate's CN became the user


async def _refused(tls, port):
    c = client(tls)
    with pytest.raises((NetworkError, ConnectRefused)) as e:
        await asyncio.wait_for(c.connect(f"mqtts://localhost:{port}"), 10)
    assert not c.is_connected
    return str(e.value)


async def test_mutual_tls_without_a_certificate_is_refused_clearly(mosquitto, pki):
    msg = await _refused(TlsConfig(ca=pki.ca), mosquitto.mtls_port)
    assert "client certificate" in msg, msg


async def test_mutual_tls_with_an_untrusted_certificate_is_refused_clearly(mosquitto, pki):
    tls = TlsConfig(ca=pki.ca, cert=pki.rogue_client_cert, key=pki.rogue_client_key)
    msg = await _refused(tls, mosquitto.mtls_port)
    assert "certificate" in msg, msg
    assert "rejected" in msg, msg


async def test_untrusted_server_is_refused(mosquitto, pki):
    msg = await _refused(TlsConfig(ca=pki.rogue_ca), mosquitto.tls_port)
    assert "verification failed" in msg, msg
    assert "CA" in msg, msg


async def test_host_name_mismatch_is_refused(mosquitto, pki):
    msg = await _refused(TlsConfig(ca=pki.ca), mosquitto.wrong_host_port)
    assert "mismatch" in msg, msg
    # ... and accepted when told which name the certificate carries.
    c = client(TlsConfig(ca=pki.ca, server_hostname="wrong.example"))
    await c.connect(f"mqtts://localhost:{mosquitto.wrong_host_port}")
    await c.disconnect()


async def test_bad_password_is_refused_with_0x87(mosquitto):
    c = client(username="user", password="wrong")
    with pytest.raises(ConnectRefused) as e:
        await asyncio.wait_for(c.connect(f"mqtt://127.0.0.1:{mosquitto.auth_port}"), 5)
    assert e.value.reason_code == 0x87  # mosquitto says Not authorized, not 0x86
    c = client()  # anonymous on a listener that needs a password
    with pytest.raises(ConnectRefused) as e:
        await asyncio.wait_for(c.connect(f"mqtt://127.0.0.1:{mosquitto.auth_port}"), 5)
    assert e.value.reason_code == 0x87
    c = client(username="user", password="secret")
    await c.connect(f"mqtt://127.0.0.1:{mosquitto.auth_port}")
    assert c.is_connected
    await c.disconnect()


@pytest.mark.parametrize("way", ["memfd", "pipes"])
async def test_client_key_never_written_to_disk(mosquitto, pki, monkeypatch, way):
    """Issue 8 item 11: CPython's ssl loads a key only from a path; the key goes through an
    in-memory file (Linux) or pipes, never a file on disk."""
    import os
    import tempfile

    def no_file(*a, **kw):
        raise AssertionError("the client key went to a file")

    monkeypatch.setattr(tempfile, "mkstemp", no_file)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_file)
    if way == "pipes":
        monkeypatch.delattr(os, "memfd_create", raising=False)
    elif not hasattr(os, "memfd_create"):
        pytest.skip("no memfd_create here")
    tls = TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    c = client(tls)
    await c.connect(f"mqtts://127.0.0.1:{mosquitto.mtls_port}")
    assert c.is_connected
    await c.disconnect()
