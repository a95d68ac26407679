"""The device's everyday path loads none of the modules kept for cold paths (issue 7: the
import and scenario heap figures rest on it), on MicroPython's unix port, against the
suite's Mosquitto over mutual TLS: connect, subscribe QoS 1, publish 64 B QoS 1, receive
it, disconnect (the bench's heap scenario, tools/bench_mp/scenario.py), then
``sys.modules``. The cold paths (status, repr, the messages() iterator, unsubscribe) then
run from the modules they load. The 32-bit port loads lib/ as .mpy (as mip installs it),
the 64-bit one as .py; host_tests/device/test_device_frozen.py checks the frozen build."""

from __future__ import annotations

import mp_unix
import pytest

pytestmark = pytest.mark.broker

# What connect / subscribe / publish / receive / disconnect over TLS may load: a module
# added here is heap every device pays for (see tools/bench_unix.py's import figures).
# (_tls_ctx and _compat_micropython_tls are loaded at each TLS connect that builds an SSL
# context too, and unloaded once it is made, and _connect at each connect, unloaded once
# the CONNECT is encoded: not in sys.modules by then, nor at the TLS handshake.)
EVERYDAY = ["mqtt_v5", "mqtt_v5._compat", "mqtt_v5._compat_micropython",
            "mqtt_v5.client", "mqtt_v5.codec",
            "mqtt_v5.properties", "mqtt_v5.session", "mqtt_v5.tls",
            "mqtt_v5.topic", "mqtt_v5.transport"]
# Loaded on first use only; each must stay out of the everyday path.
LAZY = ["mqtt_v5._cold", "mqtt_v5._clienterr", "mqtt_v5._client_extras", "mqtt_v5._session_rare",
        "mqtt_v5._publish_rare",
        "mqtt_v5._codec_rare", "mqtt_v5._errtext",
        "mqtt_v5._rare", "mqtt_v5._server_codec", "mqtt_v5._pem", "mqtt_v5._properties_rare",
        "mqtt_v5._neterr", "mqtt_v5.errors", "mqtt_v5.reasons", "mqtt_v5.sync_client",
        "mqtt_v5.blocking_transport", "mqtt_v5.memory", "mqtt_v5.ws"]


def lazy_report(exe, mosquitto, pki, **kw):
    proc = mp_unix.run_script(
        exe, mp_unix.ROOT / "host_tests" / "mp_scripts" / "unix_lazy.py",
        args=[mosquitto.host, mosquitto.ports["mtls"], pki.ca_der, pki.client_cert_der,
              pki.client_key_der], heapsize="512k", timeout=60, **kw)
    report = mp_unix.last_json(proc)
    assert proc.returncode == 0, proc.stderr
    return report


def check_lazy_report(report):
    assert report["got"] == [64]
    # Under the TLS handshake's peak (the first write), no asyncio module the client can
    # do without there: not funcs (wait_for: connect is bounded by _compat's within) nor
    # event (the client's Events come with the CONNACK), about 1.1 KB between them.
    assert report["at_handshake"] == ["asyncio", "asyncio.core"]
    # Nor any of mqtt_v5's connect-time modules (_tls_ctx, _compat_micropython_tls,
    # _connect): each unloaded itself before the CONNECT's write.
    assert report["mqtt_at_handshake"] == EVERYDAY
    assert report["everyday"] == EVERYDAY, (
        "the everyday path loads another set of modules: "
        f"{sorted(set(report['everyday']) ^ set(EVERYDAY))}")
    assert not set(LAZY) & set(report["everyday"])
    cold = report["cold"]
    assert cold["status"] == "disconnected"
    assert cold["repr"] == "<MqttClient"
    assert cold["event"] == "Connected(session_present=False)"
    assert cold["iterated"] == ["lazy/q", "q"]
    assert cold["message_repr"] == "Message(topic='lazy/q', payload=b'q', qos=1, retain=False)"
    assert cold["unsubscribe"] == 0
    assert "mqtt_v5._cold" in report["after"]  # the cold paths ran from there


def test_everyday_path_loads_no_cold_module(mp_unix_port, mosquitto, pki):
    check_lazy_report(lazy_report(mp_unix_port, mosquitto, pki, mpy=mp_unix_port == "unix32"))


@pytest.mark.parametrize(("rare", "least"), [
    ("_session_rare", 20),  # _FREE.._SLOT, _SEQ_MASK, the EV_ codes, DISCONNECTED
    ("_publish_rare", 15),  # _CONNECTED, _SLOT, the _PROP_ and _E_ numbers, ...
    ("_connect", 12),  # the states, _conf indexes, _CF_ flags, _PROP_ ids, _E_ALREADY
])
def test_session_rare_repeats_the_session_constants(rare, least):
    # The session's cold modules repeat its const() names (they fold per module on
    # MicroPython): the slot layout, slot states, event codes and error numbers must stay
    # the same in both.
    import importlib

    from mqtt_v5 import session

    module = importlib.import_module("mqtt_v5." + rare)
    shared = [n for n in vars(module) if n.lstrip("_").isupper()]
    checked = 0
    for name in shared:
        theirs = name if hasattr(session, name) else name.lstrip("_")  # _EV_X is EV_X there
        if isinstance(getattr(module, name), int) and hasattr(session, theirs):
            assert getattr(module, name) == getattr(session, theirs), name
            checked += 1
    assert checked >= least


def test_connect_repeats_the_codec_constants():
    # _connect encodes CONNECT with codec's numbers (const() folds per module): its error
    # and string-kind numbers, the packet type, the protocol level.
    from mqtt_v5 import _connect, codec

    src = (mp_unix.ROOT / "lib" / "mqtt_v5" / "codec.py").read_text()
    names = ("_E_KEEP_ALIVE", "_W_CLIENT_ID", "_W_USERNAME", "_W_PASSWORD", "_CONNECT")
    for name in names:
        assert getattr(_connect, name) == getattr(codec, name), name
    assert _connect._PROTOCOL_LEVEL == 5
    assert "_PROTOCOL_LEVEL" not in src  # (only _connect encodes it)


def test_connect_unloads_itself():
    # Session.connect loads _connect, which unloads itself once the CONNECT is encoded;
    # codec.encode_connect is it too, and is not kept in codec (or _connect would stay).
    import sys

    from mqtt_v5 import codec, session

    s = session.Session("unload-1")
    s.connect(0)
    assert s.out_len > 0
    assert "mqtt_v5._connect" not in sys.modules
    assert "_connect" not in vars(sys.modules["mqtt_v5"])
    buf = bytearray(64)
    assert codec.encode_connect(buf, "unload-1") == 23
    assert buf[0] == 0x10  # CONNECT
    assert bytes(buf[2:9]) == b"\x00\x04MQTT\x05"  # the protocol name and level
    assert "encode_connect" not in vars(codec)


def test_client_repeats_the_session_and_property_constants():
    # client.py repeats session's event codes and properties' identifiers as const()
    # (they fold per module on MicroPython): _EV_X is session's EV_X, _PROP_X properties'.
    from mqtt_v5 import client, properties, session

    checked = 0
    for name in vars(client):
        theirs = name[1:]
        for module in (session, properties):
            if name.startswith("_") and theirs.isupper() and hasattr(module, theirs):
                assert getattr(client, name) == getattr(module, theirs), name
                checked += 1
    assert checked >= 17  # the ten EV_ codes, DISCONNECTED, six PROP_ identifiers


def test_properties_rare_repeats_the_property_tables():
    # properties' _TYPES and _WHERE fold into its code on MicroPython (const()); the
    # copies prop_type and allowed_in read in _properties_rare must be the same bytes.
    from mqtt_v5 import _properties_rare, properties

    assert _properties_rare._TYPES == properties._TYPES
    assert _properties_rare._WHERE == properties._WHERE
    assert properties.prop_type is _properties_rare.prop_type
    assert properties.allowed_in(properties.PROP_USER_PROPERTY, properties.W_WILL)
    assert not properties.allowed_in(properties.PROP_TOPIC_ALIAS, 1 << 1)


@pytest.mark.parametrize(("module", "table", "base"),
                         [("codec", "CODEC", 0), ("session", "SESSION", 64)])
def test_error_numbers_match_their_texts(module, table, base):
    # codec and session raise errors by number (_E_X = const(n)); the class, reason code and
    # text live in _errtext, one line per number, each naming the constant it belongs to.
    import re

    from mqtt_v5 import _codec_rare, _errtext

    src = (mp_unix.ROOT / "lib" / "mqtt_v5" / (module + ".py")).read_text()
    numbers = [(name, int(n)) for name, n in re.findall(r"^(_E_\w+) = const\((\d+)\)", src, re.M)]
    lines = getattr(_errtext, table).split("\n")
    assert numbers == [(line.split(" ")[0], base + i) for i, line in enumerate(lines)]
    # the cold modules raise some by number, the constant's name in a comment
    found = 0
    for rare in ("_codec_rare", "_session_rare"):
        rare_src = (mp_unix.ROOT / "lib" / "mqtt_v5" / (rare + ".py")).read_text()
        for n, name in re.findall(r"_err\((\d+)\b.*# (_E_\w+)", rare_src):
            if (int(n) >= 64) == (base == 64):
                assert dict(numbers)[name] == int(n), name
                found += 1
    assert found >= 4
    assert _errtext.PACKET_NAMES.split() == list(_codec_rare.PACKET_NAMES)


def test_client_error_numbers_match_their_texts():
    # client.py raises its errors by number too (_E_X = const(n), n from 0 in order); the
    # lines are _clienterr.ERRORS', one per number, each starting with a class of errors.py.
    # _clienterr unloads itself once it made an error (_cold.error loads it again).
    import re
    import sys

    from mqtt_v5 import _clienterr, _cold, errors

    src = (mp_unix.ROOT / "lib" / "mqtt_v5" / "client.py").read_text()
    numbers = [int(n) for n in re.findall(r"^_E_\w+ = const\((\d+)\)", src, re.M)]
    lines = _clienterr.ERRORS.split("\n")
    assert numbers == list(range(len(lines)))
    for line in lines:
        assert issubclass(getattr(errors, line.split(" ")[0]), errors.MqttError), line
    e = _cold.error(9, "a/#", 0x87, [0x87])  # _E_SUBSCRIBE_REFUSED
    assert type(e) is errors.SubscribeFailed
    assert (str(e), e.reason_code, e.reason_codes) == (
        "subscription to 'a/#' refused (reason code 0x87)", 0x87, [0x87])
    assert "mqtt_v5._clienterr" not in sys.modules
    assert "_clienterr" not in vars(sys.modules["mqtt_v5"])
    e = _cold.error(4, None, None, None)  # _E_UNEXPECTED_BEFORE_CONNACK, loaded again
    assert (type(e), str(e), e.reason_code) == (
        errors.ProtocolError, "unexpected packet before CONNACK (reason code 0x82)", 0x82)
    assert "mqtt_v5._clienterr" not in sys.modules


def test_errors_by_number_keep_their_texts():
    # a few of each kind, through the modules that raise them
    from mqtt_v5 import codec, session
    from mqtt_v5.errors import MqttTimeout, ProtocolError, UsageError

    def caught(fn, *args):
        try:
            fn(*args)
        except (UsageError, ProtocolError, MqttTimeout) as e:
            return type(e).__name__, e.args[0], e.reason_code
        raise AssertionError("no error")

    assert caught(codec.encode_connect, bytearray(8), "c") == (
        "UsageError", "16-byte packet does not fit the 8-byte buffer", 0x95)
    assert caught(codec.encode_connect, bytearray(64), "\x00") == (
        "UsageError", "client id is not a valid MQTT UTF-8 string", None)
    assert caught(codec.encode_connect, bytearray(64), "c", True, 0, None, 5) == (
        "UsageError", "password must be bytes of at most 65535", None)
    rd = codec.PacketReader(16)
    rd.feed(b"\x00\x00")
    assert caught(rd.next) == ("ProtocolError", "reserved packet type 0", 0x81)
    r = codec.PacketReader(16).reader.reset(b"\x00\x00", 0, 2)
    assert caught(codec.decode_body, 0x21, r) == (
        "ProtocolError", "reserved flags of CONNACK must be 0 [MQTT-2.1.3-1]", 0x81)
    s = session.Session()
    assert caught(s.subscribe, [("a", 0)]) == ("UsageError", "not connected", None)
    s.connect(0, keep_alive_s=0)
    assert caught(s.on_timer, 20000) == ("MqttTimeout", "no CONNACK within 10000 ms", None)
    s = session.Session()
    s.connect(0)
    s.flushed(0)
    s.reader.feed(b"\x90\x03\x00\x01\x00")  # a SUBACK before the CONNACK
    assert caught(s.poll, 0) == ("ProtocolError", "SUBACK before CONNACK", 0x82)


# The error classes cost nothing until one is needed: not at the import line, not for
# MqttClient (the package finds the error names without loading client, and client's
# without loading errors); once loaded, each is one class whatever the import path.
ERRORS_LAZY = """
import sys
from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig
MqttClient(ConnectOptions("c"))
line = "mqtt_v5.errors" in sys.modules
for m in [k for k in sys.modules if k.startswith("mqtt_v5.")]:  # as if in a new process
    sys.modules.pop(m)
    delattr(sys.modules["mqtt_v5"], m[8:])
for n in ("MqttClient", "ConnectOptions", "TlsConfig"):
    delattr(sys.modules["mqtt_v5"], n)
from mqtt_v5 import NetworkError
name = "mqtt_v5.client" in sys.modules
import mqtt_v5
from mqtt_v5 import errors
from mqtt_v5.client import NetworkError as via_client
from mqtt_v5.errors import MqttError, NetworkError as via_errors
same = NetworkError is via_errors is via_client is mqtt_v5.NetworkError is errors.NetworkError
names = [n for n in dir(errors) if "A" <= n[0] <= "Z"]
found = [n for n in names if getattr(mqtt_v5, n) is getattr(errors, n)]
try:
    raise NetworkError("x")
except MqttError as e:
    caught = str(e)
print(line, name, same, len(names), len(found), caught)
"""


LIB = mp_unix.ROOT / "lib"


def test_error_classes_load_on_first_use_cpython():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(LIB)!r})\n" + ERRORS_LAZY],
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == ["False", "False", "True", "9", "9", "x"]


def test_error_classes_load_on_first_use(mp_unix_port):
    proc = mp_unix.run_script(mp_unix_port, ERRORS_LAZY, mpy=mp_unix_port == "unix32")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True", "9", "9", "x"]
