"""Transports against a real Mosquitto (plain, TLS, mutual TLS), their error messages, the
blocking variant, and the test-side network helpers (FaultProxy, ScriptedBroker)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
from pathlib import Path

import pytest
from netutil import DOWN, UP, FaultProxies, FaultProxy, ScriptedBroker

from mqtt_v5 import _server_codec as codec
from mqtt_v5.blocking_transport import BlockingTransport
from mqtt_v5.errors import NetworkError, UsageError
from mqtt_v5.tls import TlsConfig, der_to_pem, key_label, pem_to_der, read_pem_or_der
from mqtt_v5.transport import StreamTransport, open_connection, parse_url

pytestmark = pytest.mark.broker


@pytest.fixture
def fault_proxy():
    with FaultProxies() as make:
        yield make


def connect_bytes(client_id="t-transport", keep_alive=0):
    buf = bytearray(128)
    n = codec.encode_connect(buf, client_id, keep_alive=keep_alive)
    return memoryview(buf)[:n]


async def read_packet(t, timeout_s=5.0):
    """One whole packet from transport t, decoded (None if it closed first)."""
    rd = codec.PacketReader(4096)
    while True:
        first = rd.next()
        if first >= 0:
            return codec.decode_body(first, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
        n = await asyncio.wait_for(t.readinto(rd.free()), timeout_s)
        if not n:
            return None
        rd.wrote(n)


async def mqtt_hello(t, client_id="t-transport"):
    """CONNECT, then the CONNACK; closes t."""
    try:
        await t.write(connect_bytes(client_id))
        return await read_packet(t)
    finally:
        await t.close()


# ------------------------------------------------------------------------------ parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker:1884", ("broker", 1884, False)),
        ("mqtt://broker", ("broker", None, False)),
        ("mqtts://b.example:8884/", ("b.example", 8884, True)),
        ("mqtts://b.example", ("b.example", None, True)),
        ("broker.local", ("broker.local", None, False)),
        ("10.0.0.1:1999", ("10.0.0.1", 1999, False)),
        ("mqtt://[::1]:1883", ("::1", 1883, False)),
        ("mqtts://[fe80::1]", ("fe80::1", None, True)),
        ("MQTTS://Host:1", ("Host", 1, True)),
    ],
)
def test_parse_url(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://x", "mqtt://", "mqtt://h:0", "mqtt://h:70000", "mqtt://h:port",
            "mqtt://h/topic", "mqtt://[::1"],
)
def test_parse_url_refuses(url):
    with pytest.raises(UsageError):
        parse_url(url)


async def test_plain_url_with_tls_config_is_a_usage_error():
    with pytest.raises(UsageError, match="mqtts://"):
        await open_connection("mqtt://127.0.0.1:1", tls=TlsConfig(insecure_skip_verify=True))


def test_blocking_plain_url_with_tls_config_is_a_usage_error():
    # As open_connection: a TlsConfig with mqtt:// must not quietly use TLS (or not).
    from mqtt_v5.blocking_transport import BlockingTransport

    with pytest.raises(UsageError, match="mqtts://"):
        BlockingTransport.connect("mqtt://127.0.0.1:1", tls=TlsConfig(insecure_skip_verify=True))
    with pytest.raises(UsageError, match="mqtts://"):
        BlockingTransport.connect("tcp://127.0.0.1:1", tls=True)


# -------------------------------------------------------------------------- PEM / DER


def test_pem_der_round_trip(pki):
    pem = Path(pki.ca).read_bytes()
    der = Path(pki.ca_der).read_bytes()
    assert pem_to_der(pem) == [("CERTIFICATE", der)]
    assert pem_to_der(der_to_pem(der)) == [("CERTIFICATE", der)]
    assert ssl.DER_cert_to_PEM_cert(der).encode().replace(b"\n", b"") == der_to_pem(der).replace(
        b"\n", b"")
    bundle = pem + b"junk between\r\n" + Path(pki.rogue_ca).read_bytes().replace(b"\n", b"\r\n")
    blocks = read_pem_or_der(bundle)
    assert [label for label, _ in blocks] == ["CERTIFICATE", "CERTIFICATE"]
    assert blocks[1][1] == Path(pki.rogue_ca_der).read_bytes()
    assert read_pem_or_der(pki.ca_der) == [("", der)]


def test_key_kinds_are_told_apart(pki):
    from cryptography.hazmat.primitives import serialization as ser

    rsa_der = Path(pki.client_key_der).read_bytes()
    ec_der = Path(pki.client_ec_key_der).read_bytes()
    assert key_label(rsa_der) == "RSA PRIVATE KEY"
    assert key_label(ec_der) == "EC PRIVATE KEY"
    key = ser.load_der_private_key(ec_der, None)
    pkcs8 = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    assert key_label(pkcs8) == "PRIVATE KEY"
    encrypted = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8,
                                  ser.BestAvailableEncryption(b"pw"))
    with pytest.raises(UsageError, match="encrypted"):
        key_label(encrypted)
    encrypted_pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                      ser.BestAvailableEncryption(b"pw"))
    with pytest.raises(UsageError, match="encrypted"):
        TlsConfig(ca=pki.ca, cert=pki.client_ec_cert, key=encrypted_pem).context()


def test_tls_context_is_kept_until_its_material_changes(pki, tmp_path):
    """A reconnect gets the same SSL context (no second one built while the first may
    still be reachable: on a device that costs a large block of heap); another setting,
    a rewritten certificate file or material that cannot be read builds anew, the same
    as at the first connect."""
    import os

    ca = tmp_path / "ca.crt"
    ca.write_bytes(Path(pki.ca).read_bytes())
    cfg = TlsConfig(ca=str(ca), cert=pki.client_cert, key=pki.client_key)
    first = cfg.context()
    assert cfg.context() is first
    # The file rewritten with other content: another size and modification time.
    ca.write_bytes(Path(pki.rogue_ca).read_bytes() + b"\n")
    os.utime(ca, (1, 1))
    second = cfg.context()
    assert second is not first
    assert cfg.context() is second
    # Only the modification time differs (a certificate of the same size rotated in).
    os.utime(ca, (2, 2))
    third = cfg.context()
    assert third is not second
    # Another setting; equal bytes in another object are the same material.
    cfg.ca = Path(pki.ca).read_bytes()
    fourth = cfg.context()
    assert fourth is not third
    cfg.ca = bytes(bytearray(cfg.ca))
    assert cfg.context() is fourth
    cfg.key = pki.client_ec_key  # not the certificate's key: refused now, as without a cache
    with pytest.raises(UsageError, match="refused"):
        cfg.context()
    cfg.key = pki.client_key
    assert cfg.context() not in (first, second, third, fourth)
    # A file that cannot be read is never taken for the one read before.
    cfg.ca = str(ca)
    cfg.context()
    ca.unlink()
    for _ in range(2):
        with pytest.raises(UsageError, match="cannot read"):
            cfg.context()


def test_tls_config_refuses_bad_material(pki, tmp_path):
    with pytest.raises(UsageError, match="needs its key"):
        TlsConfig(cert=pki.client_cert)
    with pytest.raises(UsageError, match="cannot read"):
        TlsConfig(ca=str(tmp_path / "missing.crt")).context()
    with pytest.raises(UsageError, match="neither PEM nor DER"):
        TlsConfig(ca=b"hello").context()
    with pytest.raises(UsageError, match="not a CERTIFICATE"):
        TlsConfig(ca=pki.client_key).context()
    with pytest.raises(UsageError, match="PRIVATE KEY"):
        TlsConfig(cert=pki.client_cert, key=pki.client_cert).context()
    with pytest.raises(UsageError, match="refused"):  # a key that does not match the cert
        TlsConfig(cert=pki.client_cert, key=pki.client_ec_key).context()


# ------------------------------------------------------------------------------ plain TCP


async def test_plain_tcp_connect_and_connack(mosquitto):
    t = await open_connection(f"mqtt://{mosquitto.host}:{mosquitto.plain_port}")
    assert isinstance(t, StreamTransport)
    assert not t.tls
    sock = t._s.sock()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # no Nagle stall
    connack = await mqtt_hello(t)
    assert isinstance(connack, codec.Connack)
    assert connack.reason_code == 0


async def test_the_opening_code_unloads_itself(mosquitto):
    # _open (parse_url, open_connection's work) is connect-time code: loaded for each
    # connection and unloaded once it is open, before the TLS session is made
    # (MicroPython's _compat_micropython_open the same: test_unix_lazy checks the port).
    import sys

    import mqtt_v5

    t = await open_connection(f"mqtt://{mosquitto.host}:{mosquitto.plain_port}")
    assert "mqtt_v5._open" not in sys.modules
    assert "_open" not in vars(mqtt_v5)
    assert (await mqtt_hello(t)).reason_code == 0
    with pytest.raises(UsageError):
        await open_connection("http://h")  # (a failure unloads it too)
    assert "mqtt_v5._open" not in sys.modules


async def test_host_and_port_arguments(mosquitto):
    t = await open_connection(mosquitto.host, mosquitto.plain_port)
    assert (await mqtt_hello(t)).reason_code == 0


async def test_peer_close_reads_zero_and_close_is_idempotent():
    async with ScriptedBroker() as broker:
        t = await open_connection(broker.url)
        conn = await broker.accept()
        await conn.send(b"\xd0\x00")
        conn.close()
        buf = bytearray(16)
        assert await t.readinto(buf) == 2
        assert await t.readinto(buf) == 0
        await t.close()
        await t.close()


async def test_write_returns_with_the_buffer_free_to_reuse():
    """A write bigger than the socket buffers: the transport must not keep a reference to
    the caller's buffer after write() returns (recent CPython would)."""
    async with ScriptedBroker() as broker:
        t = await open_connection(broker.url)
        conn = await broker.accept()
        size = 64 << 20
        buf = bytearray(b"A" * size)
        writer = asyncio.create_task(t.write(buf))
        await asyncio.sleep(0.05)
        assert not writer.done()  # the broker is not reading: back-pressure
        got = bytearray()
        reading = asyncio.create_task(_read_n(conn, size, got))
        await writer
        buf[:] = b"B" * size  # reuse at once
        await t.write(b"C")
        await reading
        assert got == b"A" * size
        assert await conn.read_bytes() == b"C"
        await t.close()


async def test_tls_big_writes_complete_and_arrive_intact(pki):
    """Back-pressure through CPython's TLS transport: every write() returns (none waits
    forever for a resume that never comes) and the bytes arrive in order."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    got = bytearray()
    done = asyncio.Event()
    total = 8 << 20

    async def sink(reader, writer):
        await asyncio.sleep(0.2)  # let the client's buffers fill first
        while len(got) < total:
            data = await reader.read(1 << 16)
            if not data:
                break
            got.extend(data)
        done.set()
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        t = await open_connection(f"mqtts://localhost:{port}", tls=TlsConfig(ca=pki.ca))
        chunk = bytearray(1 << 16)
        for i in range(total // len(chunk)):
            chunk[:] = bytes([i & 0xFF]) * len(chunk)  # reused at once after each write
            await asyncio.wait_for(t.write(chunk), 10)
        await asyncio.wait_for(t.write(b""), 10)  # an empty write is harmless
        await asyncio.wait_for(done.wait(), 10)
        assert len(got) == total
        for i in range(total // len(chunk)):
            assert got[i * len(chunk)] == i & 0xFF
            assert got[(i + 1) * len(chunk) - 1] == i & 0xFF
        await t.close()
    finally:
        server.close()


async def _read_n(conn, n, out):
    while len(out) < n:
        data = await conn.reader.read(n - len(out))
        assert data
        out += data


async def test_a_cancelled_readinto_loses_no_bytes():
    async with ScriptedBroker() as broker:
        t = await open_connection(broker.url)
        conn = await broker.accept()
        big = bytearray(65536)
        for _ in range(3):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(t.readinto(big), 0.01)
        payload = bytes(range(256)) * 64
        await conn.send(payload)
        got = bytearray()
        while len(got) < len(payload):
            try:
                n = await asyncio.wait_for(t.readinto(big), 0.001)
            except TimeoutError:
                continue
            got += big[:n]
        assert got == payload
        await t.close()


async def test_small_reads_come_from_the_side_buffer():
    async with ScriptedBroker() as broker:
        t = await open_connection(broker.url)
        conn = await broker.accept()
        await conn.send(b"0123456789" * 1000)
        small = bytearray(7)
        got = bytearray()
        while len(got) < 10000:
            n = await t.readinto(small)
            got += small[:n]
        assert got == b"0123456789" * 1000
        await t.close()


# --------------------------------------------------------------------------- TLS, server


def _tls_url(mosquitto, listener="tls", host="localhost"):
    return f"mqtts://{host}:{getattr(mosquitto, listener + '_port')}"


@pytest.mark.parametrize("form", ["pem_path", "der_path", "pem_bytes", "der_bytes"])
async def test_tls_with_ca_in_every_form(mosquitto, pki, form):
    ca = {"pem_path": pki.ca, "der_path": pki.ca_der,
          "pem_bytes": pki.read("ca"), "der_bytes": pki.read("ca_der")}[form]
    t = await open_connection(_tls_url(mosquitto), tls=TlsConfig(ca=ca))
    assert t.tls
    assert (await mqtt_hello(t)).reason_code == 0


async def test_tls_by_ip_address_checks_the_ip_san(mosquitto, pki):
    t = await open_connection(_tls_url(mosquitto, host="127.0.0.1"), tls=TlsConfig(ca=pki.ca))
    assert (await mqtt_hello(t)).reason_code == 0


async def test_tls_untrusted_server_is_refused(mosquitto, pki):
    with pytest.raises(NetworkError, match=r"verification failed.*unknown CA"):
        await open_connection(_tls_url(mosquitto), tls=TlsConfig(ca=pki.rogue_ca))


async def test_tls_default_context_verifies_against_system_cas(mosquitto):
    with pytest.raises(NetworkError, match="verification failed"):
        await open_connection(_tls_url(mosquitto))  # mqtts:// and no TlsConfig


async def test_tls_host_name_mismatch_is_refused(mosquitto, pki):
    with pytest.raises(NetworkError, match="host name mismatch"):
        await open_connection(_tls_url(mosquitto, "wrong_host"), tls=TlsConfig(ca=pki.ca))


async def test_tls_server_hostname_override(mosquitto, pki):
    cfg = TlsConfig(ca=pki.ca, server_hostname="wrong.example")
    t = await open_connection(_tls_url(mosquitto, "wrong_host"), tls=cfg)
    assert (await mqtt_hello(t)).reason_code == 0


async def test_tls_insecure_opt_out_connects_and_warns_once(mosquitto, pki, capsys):
    import mqtt_v5.tls as tls_mod  # the flag lives there (_tls_ctx is unloaded after use)

    tls_mod._warned = False
    for listener in ("wrong_host", "tls"):
        t = await open_connection(_tls_url(mosquitto, listener),
                                  tls=TlsConfig(insecure_skip_verify=True))
        assert (await mqtt_hello(t)).reason_code == 0
    assert capsys.readouterr().out.count("verification is OFF") == 1


async def test_tls_expired_server_certificate_is_named(pki, tmp_path):
    cert, key = _expired_server_cert(pki, tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(NetworkError, match="expired"):
            await open_connection(f"mqtts://localhost:{port}", tls=TlsConfig(ca=pki.ca))
    finally:
        server.close()


def _expired_server_cert(pki, directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate(pki.read("ca"))
    ca_key = serialization.load_pem_private_key(pki.read("ca_key"), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "expired.crt", directory / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


# ----------------------------------------------------------------------- TLS, mutual


@pytest.mark.parametrize(
    ("who", "form"),
    [("client", "pem_path"), ("client", "der_bytes"), ("client_ec", "pem_path"),
     ("client_ec", "der_path"), ("client_ec", "pkcs8_der")],
)
async def test_mutual_tls(mosquitto, pki, who, form):
    cert, key = getattr(pki, who + "_cert"), getattr(pki, who + "_key")
    if form == "der_path":
        cert, key = getattr(pki, who + "_cert_der"), getattr(pki, who + "_key_der")
    elif form == "der_bytes":
        cert, key = pki.read(who + "_cert_der"), pki.read(who + "_key_der")
    elif form == "pkcs8_der":
        from cryptography.hazmat.primitives import serialization as ser

        k = ser.load_pem_private_key(pki.read(who + "_key"), None)
        cert = pki.read(who + "_cert_der")
        key = k.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    t = await open_connection(_tls_url(mosquitto, "mtls"), tls=TlsConfig(pki.ca, cert, key))
    assert (await mqtt_hello(t)).reason_code == 0
    cn = pki.client_cn if who == "client" else pki.client_ec_cn
    await asyncio.sleep(0.1)
    assert f"u'{cn}'" in mosquitto.log()  # the broker saw our certificate's CN


async def test_mutual_tls_client_cert_from_a_rogue_ca_is_named(mosquitto, pki):
    cfg = TlsConfig(ca=pki.ca, cert=pki.rogue_client_cert, key=pki.rogue_client_key)
    t = await open_connection(_tls_url(mosquitto, "mtls"), tls=cfg)  # TLS 1.3: "succeeds"
    with pytest.raises(NetworkError, match="rejected the client certificate"):
        await mqtt_hello(t)


async def test_mutual_tls_without_a_client_cert_is_named(mosquitto, pki):
    t = await open_connection(_tls_url(mosquitto, "mtls"), tls=TlsConfig(ca=pki.ca))
    with pytest.raises(NetworkError, match="requires a client certificate"):
        await mqtt_hello(t)


async def test_mutual_tls_refusal_under_tls_1_2_is_named_at_connect(mosquitto, pki):
    """TLS 1.2 refuses the certificate inside the handshake (an alert), not after it."""
    cfg = TlsConfig(ca=pki.ca, cert=pki.rogue_client_cert, key=pki.rogue_client_key)
    ctx = cfg.context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    cfg.context = lambda: ctx
    with pytest.raises(NetworkError, match="rejected the client certificate"):
        await open_connection(_tls_url(mosquitto, "mtls"), tls=cfg)


# ---------------------------------------------------------------- connect failures


def test_timeouts_and_odd_value_errors_are_not_called_certificate_failures():
    """A timeout before the first byte of a TLS link is no refusal by the server, and a
    ValueError that is no verification verdict is not reported as one (the unix-port side:
    test_unix_client.py::test_network_errors_are_named)."""
    from mqtt_v5._neterr import error

    msg = str(error(TimeoutError("timed out"), "h:1", True, True, True, "read"))
    assert "timed out" in msg
    assert "certificate" not in msg
    msg = str(error(ValueError("buffer too small"), "h:1", True, False, False, "read"))
    assert "buffer too small" in msg
    assert "certificate" not in msg
    msg = str(error(BrokenPipeError(32, "Broken pipe"), "h:1", True, True, True, "write"))
    assert "rejected the client certificate" in msg


async def test_connection_refused_is_named():
    port = _closed_port()
    with pytest.raises(NetworkError, match="connection refused"):
        await open_connection(f"mqtt://127.0.0.1:{port}")


async def test_dns_failure_is_named():
    with pytest.raises(NetworkError, match="DNS"):
        await open_connection("mqtt://no-such-host.invalid", timeout_s=20)


async def test_tls_handshake_that_never_completes_times_out():
    async with ScriptedBroker() as broker:  # accepts, never answers the ClientHello
        t0 = time.monotonic()
        with pytest.raises(NetworkError, match=r"timed out after 0.3 s.*TLS handshake"):
            await open_connection(f"mqtts://127.0.0.1:{broker.port}",
                                  tls=TlsConfig(insecure_skip_verify=True), timeout_s=0.3)
        assert time.monotonic() - t0 < 2


async def test_tcp_connect_that_never_completes_times_out():
    # A listener whose accept queue is full drops further SYNs: connect() hangs.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        await asyncio.sleep(0.05)
        with pytest.raises(NetworkError, match="timed out"):
            await open_connection(f"mqtt://127.0.0.1:{port}", timeout_s=0.5)
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------- blocking variant


def test_blocking_plain_round_trip(mosquitto):
    t = BlockingTransport.connect(f"mqtt://127.0.0.1:{mosquitto.plain_port}")
    try:
        t.write(connect_bytes("t-blocking"))
        buf = bytearray(64)
        n = t.readinto(buf, 5)
        assert codec.decode(bytes(buf[:n])).reason_code == 0
        assert t.readinto(buf, 0.05) is None  # nothing more: a timeout, not an error
        t.write(codec.PINGREQ_BYTES)
        assert bytes(buf[:t.readinto(buf, 5)]) == codec.PINGRESP_BYTES
    finally:
        t.close()
        t.close()


def test_blocking_mutual_tls(mosquitto, pki):
    cfg = TlsConfig(ca=pki.read("ca_der"), cert=pki.client_ec_cert_der, key=pki.client_ec_key)
    t = BlockingTransport.connect(_tls_url(mosquitto, "mtls"), tls=cfg)
    try:
        t.write(connect_bytes("t-blocking-tls"))
        buf = bytearray(64)
        n = t.readinto(buf, 5)
        assert codec.decode(bytes(buf[:n])).reason_code == 0
        assert t.readinto(buf, 0.05) is None
    finally:
        t.close()


def test_blocking_errors_are_named(mosquitto, pki):
    with pytest.raises(NetworkError, match="connection refused"):
        BlockingTransport.connect(f"mqtt://127.0.0.1:{_closed_port()}")
    with pytest.raises(NetworkError, match="verification failed"):
        BlockingTransport.connect(_tls_url(mosquitto), tls=TlsConfig(ca=pki.rogue_ca))
    t = BlockingTransport.connect(_tls_url(mosquitto, "mtls"), tls=TlsConfig(ca=pki.ca))
    try:
        # The refusal may surface on the write or on the read, depending on timing.
        with pytest.raises(NetworkError, match="requires a client certificate"):
            _blocking_hello(t)
    finally:
        t.close()


def _blocking_hello(t):
    t.write(connect_bytes("t-blocking"))
    return t.readinto(bytearray(64), 5)


# ---------------------------------------------------------------------------- FaultProxy


async def _proxied_hello(proxy, client_id):
    t = await open_connection(proxy.url)
    await t.write(connect_bytes(client_id))
    assert (await read_packet(t)).reason_code == 0
    return t


async def test_fault_proxy_forwards_and_counts(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    t = await _proxied_hello(proxy, "t-proxy-count")
    assert proxy.connections == 1
    assert proxy.active == 1
    assert proxy.bytes_up == len(connect_bytes("t-proxy-count"))
    assert proxy.bytes_down >= 5
    await t.close()


async def test_fault_proxy_cut_closes_the_client(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    t = await _proxied_hello(proxy, "t-proxy-cut")
    proxy.cut()
    assert await asyncio.wait_for(t.readinto(bytearray(16)), 2) == 0
    assert proxy.active == 0
    await t.close()


async def test_fault_proxy_reset_sends_rst(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    t = await _proxied_hello(proxy, "t-proxy-rst")
    proxy.reset()
    with pytest.raises(NetworkError, match="reset"):
        await asyncio.wait_for(t.readinto(bytearray(16)), 2)
    await t.close()


async def test_fault_proxy_stall_holds_bytes_until_resumed(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    t = await _proxied_hello(proxy, "t-proxy-stall")
    proxy.stall()
    await t.write(codec.PINGREQ_BYTES)
    buf = bytearray(16)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(t.readinto(buf), 0.3)
    proxy.resume()
    assert bytes(buf[:await asyncio.wait_for(t.readinto(buf), 2)]) == codec.PINGRESP_BYTES
    proxy.stall(0.2)  # timed: flows again by itself
    await t.write(codec.PINGREQ_BYTES)
    t0 = time.monotonic()
    assert await asyncio.wait_for(t.readinto(buf), 2) == 2
    assert time.monotonic() - t0 >= 0.15
    await t.close()


@pytest.mark.parametrize("direction", [UP, DOWN])
async def test_fault_proxy_cut_after_bytes_cuts_mid_packet(mosquitto, fault_proxy, direction):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    t = await _proxied_hello(proxy, "t-proxy-mid-" + direction)
    up0, down0 = proxy.bytes_up, proxy.bytes_down
    buf = bytearray(4096)
    pub = bytearray(256)
    n = codec.encode_publish(pub, "t/mid", b"x" * 100)
    if direction == UP:
        proxy.cut_after_bytes(10, UP)
        await t.write(memoryview(pub)[:n])
        assert await asyncio.wait_for(t.readinto(buf), 2) == 0
        assert proxy.bytes_up - up0 == 10
    else:
        proxy.cut_after_bytes(3, DOWN)  # the broker's PUBACK is 4 bytes: 3 get through
        q1 = bytearray(256)
        m = codec.encode_publish(q1, "t/mid", b"y", qos=1, packet_id=7)
        await t.write(memoryview(q1)[:m])
        got = bytearray()
        while True:
            k = await asyncio.wait_for(t.readinto(buf), 2)
            if not k:
                break
            got += buf[:k]
        assert len(got) == 3
        assert proxy.bytes_down - down0 == 3
    await t.close()


async def test_fault_proxy_refuse_then_accept_again(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    proxy.refuse(True)
    with pytest.raises(NetworkError, match="connection refused"):
        await open_connection(proxy.url)
    proxy.refuse(False)
    t = await _proxied_hello(proxy, "t-proxy-refuse")
    await t.close()


def test_fault_proxy_stops_by_itself(mosquitto):
    proxy = FaultProxy(mosquitto.host, mosquitto.plain_port, max_lifetime_s=0.2).start()
    proxy._thread.join(5)
    assert not proxy._thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    proxy.stop()  # harmless after the fact


# ------------------------------------------------------------------------ ScriptedBroker


async def test_scripted_broker_decodes_and_sends_raw_bytes():
    async with ScriptedBroker() as broker:
        t = await open_connection(broker.url)
        conn = await broker.accept()
        await t.write(connect_bytes("t-scripted"))
        connect = await conn.expect(codec.CONNECT)
        assert connect.client_id == "t-scripted"
        await conn.send(b"\x20\x03\x00\x00\x00")  # CONNACK, raw
        assert (await read_packet(t)).reason_code == 0
        await conn.send_packet(codec.Disconnect(0x8E))
        assert (await read_packet(t)).reason_code == 0x8E
        # Something broken from the client side: the decoder's ProtocolError is returned.
        await t.write(b"\x00\x00")
        first, body, err = await conn.read_packet()
        assert first == 0
        assert body == b"\x00"
        assert err.reason_code == 0x81
        assert conn.received[0][:1] == b"\x10"
        await t.close()
        assert await conn.wait_closed(2)


async def test_scripted_broker_can_hold_back_the_connack():
    async with ScriptedBroker() as broker:
        t = await open_connection(broker.url)
        conn = await broker.accept()
        await t.write(connect_bytes())
        await conn.expect(codec.CONNECT)
        with pytest.raises(asyncio.TimeoutError):
            await read_packet(t, timeout_s=0.2)  # the CONNACK never comes
        conn.reset()
        with pytest.raises(NetworkError, match="reset"):
            await read_packet(t)
        await t.close()


def test_naming_a_network_failure_unloads_its_texts():
    """_neterr unloads itself once it made an error (a failed reconnect attempt keeps none
    of its heap for the next one's TLS handshake); the next failure loads it again."""
    import sys

    from mqtt_v5 import _neterr

    made = []
    for make, args in ((_neterr.error, (None, "h:1", True, False, False, "read")),
                       (_neterr.dns_error, ("h", OSError(-2))),
                       (_neterr.usage_error, (0, "x://h")),
                       (_neterr.timeout_error, (5, "h:1", True))):
        made.append(make(*args))
        assert "mqtt_v5._neterr" not in sys.modules, make
        assert "_neterr" not in vars(sys.modules["mqtt_v5"]), make
        sys.modules["mqtt_v5._neterr"] = _neterr  # (as if loaded again)
    assert [type(e).__name__ for e in made] == [
        "NetworkError", "NetworkError", "UsageError", "NetworkError"]
    assert str(made[3]).startswith("timed out after 5 s connecting to h:1 (TCP connect")
    from mqtt_v5._neterr import error  # loaded again

    assert "EOF" in str(error(None, "h:1", False, False, False, "read"))
