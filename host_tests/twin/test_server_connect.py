"""The twin endpoint's CONNECT behaviour against AWS IoT Core's (aws-iot-spec §1), with
paho-mqtt 2.x (MQTT 5) as an independent client over mutual TLS and plain TCP, and a
raw-socket client for what paho will not send."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from twin._server_util import HOST, TIMEOUT, client_context, running_twin, wait_for


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, connect_timeout_s=1.0) as t:
        yield t


def test_connack_carries_aws_values_over_mutual_tls(tw):
    # §1.6: the CONNACK AWS sent in [JS535]: Receive Maximum 100, Maximum QoS 1, Retain
    # Available, Maximum Packet Size 149504, Topic Alias Maximum 8, wildcard and shared
    # subscriptions available, subscription identifiers not.
    c = tw.paho("t1", keepalive=120)
    p = c.connected_props
    assert p.ReceiveMaximum == 100
    assert p.MaximumQoS == 1
    assert p.RetainAvailable == 1
    assert p.MaximumPacketSize == 149504
    assert p.TopicAliasMaximum == 8
    assert p.WildcardSubscriptionAvailable == 1
    assert p.SubscriptionIdentifierAvailable == 0
    assert p.SharedSubscriptionAvailable == 1
    assert p.ServerKeepAlive == 120  # §1.6: Server Keep Alive = the (clamped) keep-alive
    assert not c.session_present
    c.close()


@pytest.mark.parametrize(
    ("asked", "granted"), [(0, 1200), (5, 30), (29, 30), (30, 30), (1200, 1200), (2000, 1200)]
)
def test_keep_alive_is_clamped_to_30_1200(tw, asked, granted):
    # §1.5 [QUOTAS-OLD]: 0 or > 1200 -> 1200, 1..29 -> 30.
    raw = tw.raw()
    ack = raw.connect(f"ka{asked}", keep_alive=asked)
    assert ack.reason_code == 0
    assert ack.properties[P.PROP_SERVER_KEEP_ALIVE] == granted
    raw.close()


def test_session_expiry_is_capped_and_returned(tw):
    # §1.6 [MQTT-DOC]: session expiry capped at the account maximum (default 1 h), the
    # adjusted value returned in CONNACK.
    raw = tw.raw()
    ack = raw.connect(
        "sei", clean_start=False, properties={P.PROP_SESSION_EXPIRY_INTERVAL: 7 * 86400}
    )
    assert ack.properties[P.PROP_SESSION_EXPIRY_INTERVAL] == 3600
    raw.close()
    raw = tw.raw()
    ack = raw.connect("sei2", properties={P.PROP_SESSION_EXPIRY_INTERVAL: 60})
    assert P.PROP_SESSION_EXPIRY_INTERVAL not in ack.properties  # not adjusted: not echoed
    raw.close()


def test_client_id_over_128_bytes_is_refused(tw):
    # §1.5 [QUOTAS-OLD]: at most 128 bytes; §1.8 CONNACK 0x85.
    raw = tw.raw()
    assert raw.connect("x" * 129).reason_code == 0x85
    assert raw.closed()
    raw = tw.raw()
    assert raw.connect("x" * 128).reason_code == 0
    raw.close()


def test_dollar_client_id_is_refused_even_the_assigned_kind(tw):
    # §1.5 [QUOTAS-OLD], [CRT-MQTT]: '$' is reserved, $GEN/ included.
    for cid in ("$thing", "$GEN/1234"):
        raw = tw.raw()
        assert raw.connect(cid).reason_code == 0x85
        raw.close()


def test_empty_client_id_gets_a_gen_id(tw):
    # §1.5 [CRT-MQTT]: AWS assigns $GEN/<uuid>.
    raw = tw.raw()
    ack = raw.connect("")
    assert ack.reason_code == 0
    assert ack.properties[P.PROP_ASSIGNED_CLIENT_IDENTIFIER].startswith("$GEN/")
    raw.close()


def test_will_qos_2_is_refused_with_0x9b(tw):
    # §1.5, §1.9 [MQTT-DOC]: CONNACK 0x9B QoS not supported (will QoS).
    raw = tw.raw()
    ack = raw.connect("w2", will=codec.Will("w/t", b"x", qos=2))
    assert ack.reason_code == 0x9B
    raw.close()


def test_mqtt_3_client_gets_a_v3_refusal(tw):
    # The twin speaks MQTT 5 only: a 3.1.1 (or 3.1) CONNECT gets the v3 CONNACK with return
    # code 1 "unacceptable protocol version", then the connection closes.
    for connect in (
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
        b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00",
    ):
        s = socket.create_connection((HOST, tw.port("plain")))
        s.sendall(connect)
        s.settimeout(TIMEOUT)
        assert s.recv(100) == b"\x20\x02\x00\x01"
        assert s.recv(100) == b""
        s.close()
    # paho as an MQTT 3.1.1 client (it retries as 3.1 after rc 1): refused, never connected.
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="old", protocol=paho.MQTTv311)
    codes = []
    c.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    c.connect(HOST, tw.port("plain"))
    deadline = time.monotonic() + TIMEOUT
    while not codes and time.monotonic() < deadline:
        c.loop(0.1)
    assert codes
    assert codes[0].is_failure


def test_session_takeover_sends_0x8e_to_the_old_connection(tw):
    # §1.5 [MQTT-DOC]: same client id -> old connection gets DISCONNECT 0x8E.
    old = tw.paho("t1")
    new = tw.paho("t1")
    assert old.disconnected() == 0x8E
    assert new.publish("a/b", b"still here") == 0
    new.close()


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_inactive_or_revoked_certificate_is_refused(tw, status):
    creds = tw.thing("t1")
    tw.call(tw.twin.set_certificate_status, creds.certificate_id, status)
    c = tw.paho("t1", connect=False)
    # §1.5/§1.8: MQTT 5 gets a CONNACK reason code: 0x87 Not authorized.
    assert c.connect(expect=None) == 0x87
    c.close()


def test_unregistered_certificate_from_the_twin_ca_is_refused(tw):
    creds = tw.thing("t1")
    tw.call(tw.twin.registry.delete_certificate, creds.certificate_id)
    c = tw.paho("t1", connect=False)
    assert c.connect(expect=None) == 0x87
    c.close()


def test_certificate_from_another_ca_fails_the_handshake(tw, tmp_path):
    from iot_twin.ca import CertificateAuthority

    rogue = CertificateAuthority.create(common_name="rogue")
    cert, key = rogue.issue_device_cert("t1")
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    ctx = ssl.create_default_context(cafile=tw.ca)
    ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _tls_connect(tw.port("mtls"), ctx)


def _tls_connect(port, ctx):
    s = ctx.wrap_socket(socket.create_connection((HOST, port)), server_hostname="localhost")
    s.sendall(codec.encode_bytes(codec.Connect("t1")))
    if not s.recv(10):
        raise ConnectionError("closed")  # TLS 1.3: the alert can come after the handshake


def test_no_client_certificate_on_mtls_fails(tw):
    ctx = client_context(tw.ca)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _tls_connect(tw.port("mtls"), ctx)


def test_client_id_must_be_the_thing_name_under_the_default_policy(tw):
    # The default thing policy allows iot:Connect on client/${iot:Connection.Thing.ThingName}.
    tw.thing("t1")
    c = tw.paho("not-t1", thing="t1", connect=False)
    assert c.connect(expect=None) == 0x87
    c.close()


def test_alpn_x509_route_on_the_443_lookalike(tw):
    # §1.2 [PROTO]: port 443 + ALPN x-amzn-mqtt-ca = MQTT with an X.509 client certificate.
    creds = tw.thing("t1")
    ctx = client_context(tw.ca, creds, alpn=["x-amzn-mqtt-ca"])
    raw = socket.create_connection((HOST, tw.port("alpn")))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "x-amzn-mqtt-ca"
    s.sendall(codec.encode_bytes(codec.Connect("t1")))
    ack = codec.decode(s.recv(4096))
    assert ack.reason_code == 0
    assert tw.call(tw.twin.connections)[0]["listener"] == "alpn-x509"
    s.close()


def test_keep_alive_timeout_disconnects_with_0x8d(tmp_path):
    # §1.5 [QUOTAS-OLD]: disconnect at 1.5 x keep-alive; §1.8 DISCONNECT 0x8D. AWS's 30 s
    # floor is lowered for this test only (keepalive_floor_s) so it takes 1.5 s, not 45 s.
    with running_twin(tmp_path, keepalive_floor_s=1) as t:
        raw = t.raw()
        ack = raw.connect("idle", keep_alive=1)
        assert ack.properties[P.PROP_SERVER_KEEP_ALIVE] == 1
        start = time.monotonic()
        d = raw.recv_type(codec.DISCONNECT, timeout=5)
        assert d.reason_code == 0x8D
        assert 1.4 < time.monotonic() - start < 3
        # ... while a client that pings stays connected.
        raw2 = t.raw()
        raw2.connect("busy", keep_alive=1)
        for _ in range(4):
            time.sleep(0.5)
            raw2.send(codec.PINGREQ_BYTES)
            assert raw2.recv_type(codec.PINGRESP).type == codec.PINGRESP
        raw2.close()


# --- robustness: bad input never takes the server down ----------------------------------------


def _serves_next_client(tw):
    c = tw.paho("t1")
    assert c.publish("ok/topic", b"1") == 0
    c.close()


def test_malformed_packet_gets_disconnect_0x81_and_the_server_survives(tw):
    raw = tw.raw()
    assert raw.connect("m1").reason_code == 0
    raw.send(b"\x82\x03\x00\x01\x00")  # SUBSCRIBE without filters ... truncated property len
    d = raw.recv_type(codec.DISCONNECT)
    assert d is not None
    assert d.reason_code in (0x81, 0x82)
    assert raw.closed()
    raw = tw.raw()
    assert raw.connect("m2").reason_code == 0
    raw.send(b"\x30\xff\xff\xff\xff\x7f")  # remaining length of 5 bytes
    assert raw.recv_type(codec.DISCONNECT).reason_code == 0x81
    _serves_next_client(tw)


def test_garbage_before_connect_is_dropped(tw):
    for junk in (b"\x00" * 10, b"GET / HTTP/1.1\r\n\r\n", b"\x10\x05garbage"):
        s = socket.create_connection((HOST, tw.port("plain")))
        s.sendall(junk)
        s.settimeout(TIMEOUT)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        # Either closed outright, or a CONNACK refusal then close.
        assert data == b"" or data[0] == 0x20
        s.close()
    _serves_next_client(tw)


def test_garbage_tls_and_half_open_connections(tw):
    # Not TLS at all on the TLS ports, a TLS hello cut short, and a silent TCP connection.
    for name in ("mtls", "alpn", "wss"):
        s = socket.create_connection((HOST, tw.port(name)))
        s.sendall(b"\x16\x03\x01\x00\x05hello-not-tls" * 3)
        s.settimeout(TIMEOUT)
        try:
            s.recv(100)
        except (ConnectionResetError, TimeoutError):
            pass
        s.close()
    silent = socket.create_connection((HOST, tw.port("plain")))
    silent.settimeout(TIMEOUT)
    start = time.monotonic()
    assert silent.recv(10) == b""  # closed after connect_timeout_s (1 s here) without CONNECT
    assert time.monotonic() - start < 3
    _serves_next_client(tw)


def test_second_connect_is_a_protocol_error(tw):
    raw = tw.raw()
    raw.connect("twice")
    raw.send(codec.Connect("twice"))
    assert raw.recv_type(codec.DISCONNECT).reason_code == 0x82
    _serves_next_client(tw)


def test_connections_lists_live_clients(tw):
    c = tw.paho("t1")
    c.subscribe("a/b")
    conns = wait_for(lambda: tw.call(tw.twin.connections))
    assert conns[0]["client_id"] == "t1"
    assert conns[0]["thing"] == "t1"
    assert conns[0]["auth"] == "x509"
    assert conns[0]["subscriptions"] == ["a/b"]
    c.close()
    wait_for(lambda: not tw.call(tw.twin.connections))


def _handshake(port, ctx, server_hostname):
    """CONNECT over TLS; the CONNACK's reason code, or None if the TLS session failed."""
    try:
        s = ctx.wrap_socket(
            socket.create_connection((HOST, port)), server_hostname=server_hostname
        )
        s.settimeout(TIMEOUT)
        s.sendall(codec.encode_bytes(codec.Connect("t1")))
        data = s.recv(4096)
    except (ConnectionError, ssl.SSLError):
        return None
    s.close()
    return codec.decode(data).reason_code if data else None


@pytest.mark.parametrize("listener", ["mtls", "alpn"])
def test_sni_is_required_by_default(tmp_path, listener):
    # §1.3 [MQTT-DOC]: "Connection attempts that don't include the SNI are refused"; the twin
    # refuses them by default (in the handshake), so a client that forgets SNI fails here.
    with running_twin(tmp_path, listeners=(listener,)) as t:
        creds = t.thing("t1")
        alpn = ["x-amzn-mqtt-ca"] if listener == "alpn" else None
        ctx = client_context(t.ca, creds, alpn=alpn)
        assert _handshake(t.port(listener), ctx, "localhost") == 0
        ctx.check_hostname = False
        assert _handshake(t.port(listener), ctx, None) is None  # no SNI
        assert _handshake(t.port(listener), ctx, "wrong.example") is None


def test_sni_check_can_be_turned_off(tmp_path):
    with running_twin(tmp_path, require_sni=False, listeners=("mtls",)) as t:
        ctx = client_context(t.ca, t.thing("t1"))
        ctx.check_hostname = False
        assert _handshake(t.port("mtls"), ctx, None) == 0


def test_our_client_without_sni_fails_and_with_it_connects(tmp_path):
    # Dialling 127.0.0.1 gives no SNI (an IP address is never sent as a server name,
    # RFC 6066 §3): our library must be told the endpoint's name, as on AWS.
    from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig
    from mqtt_v5.errors import MqttError

    with running_twin(tmp_path, listeners=("mtls",)) as t:
        creds = t.thing("t1")

        async def attempt(host, server_hostname):
            options = ConnectOptions(client_id="t1")
            options.tls = TlsConfig(
                ca=t.ca,
                cert=str(creds.cert_path),
                key=str(creds.key_path),
                server_hostname=server_hostname,
            )
            client = MqttClient(options)
            try:
                await asyncio.wait_for(client.connect(f"mqtts://{host}:{t.port('mtls')}"), 10)
            except (MqttError, OSError) as e:
                return e
            await client.disconnect()
            return None

        assert isinstance(asyncio.run(attempt(HOST, None)), MqttError)  # no SNI
        assert asyncio.run(attempt("localhost", None)) is None
        assert asyncio.run(attempt(HOST, "localhost")) is None
