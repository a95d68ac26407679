"""The I/O-free parts of the transport layer, on both runtimes: URL parsing, PEM <-> DER,
private-key kinds, and how failures are named (including the errors MicroPython's mbedTLS
raises, which only a device could produce for real). No pytest features here."""

import errno

from _check import raises

from mqtt_v5._neterr import error
from mqtt_v5.errors import NetworkError, UsageError
from mqtt_v5.tls import TlsConfig, der_to_pem, key_label, pem_to_der, read_pem_or_der
from mqtt_v5.transport import parse_url

_DER = b"\x30\x82\x01\x00" + bytes(range(256))  # framing is all the PEM code looks at


def test_parse_url():
    assert parse_url("mqtts://broker.example:8884") == ("broker.example", 8884, True)
    assert parse_url("mqtt://[::1]") == ("::1", None, False)
    assert parse_url("10.1.2.3:1999") == ("10.1.2.3", 1999, False)
    raises(UsageError, parse_url, "ws://x")
    raises(UsageError, parse_url, "mqtt://h:99999")


def test_pem_round_trip_and_bundles():
    pem = der_to_pem(_DER)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert max(len(line) for line in pem.split(b"\n")) == 64
    assert pem_to_der(pem) == [("CERTIFICATE", _DER)]
    key_pem = der_to_pem(b"\x30\x03\x02\x01\x00", "EC PRIVATE KEY")
    blocks = read_pem_or_der(pem.replace(b"\n", b"\r\n") + b"comment\n" + key_pem)
    assert blocks == [("CERTIFICATE", _DER), ("EC PRIVATE KEY", b"\x30\x03\x02\x01\x00")]
    assert read_pem_or_der(_DER) == [("", _DER)]
    raises(UsageError, read_pem_or_der, b"not a certificate")
    raises(UsageError, read_pem_or_der, 42)
    raises(UsageError, pem_to_der, b"-----BEGIN CERTIFICATE-----\nAAAA\n")


def test_private_key_kinds():
    assert key_label(b"\x30\x0a\x02\x01\x00\x02\x05\x00\x01\x02\x03\x04") == "RSA PRIVATE KEY"
    assert key_label(b"\x30\x08\x02\x01\x01\x04\x03\x01\x02\x03") == "EC PRIVATE KEY"
    assert key_label(b"\x30\x81\x08\x02\x01\x00\x30\x03\x06\x01\x00") == "PRIVATE KEY"
    e = raises(UsageError, key_label, b"\x30\x08\x30\x03\x06\x01\x00\x04\x01\x00")
    assert "encrypted" in str(e)
    raises(UsageError, key_label, b"\x04\x01\x00")
    raises(UsageError, key_label, b"\x30")


def test_tls_config_usage_errors():
    raises(UsageError, TlsConfig, None, b"cert")  # a cert needs its key
    e = raises(UsageError, TlsConfig(ca=b"junk").context)
    assert "neither PEM nor DER" in str(e)


def test_failures_are_named():
    peer = "b.example:8883"
    # Plain TCP.
    e = error(OSError(errno.ECONNREFUSED, "refused"), peer, False, True, False, "connect")
    assert isinstance(e, NetworkError) and "connection refused" in str(e)
    e = error(OSError(errno.ECONNRESET), peer, False, False, False, "read")
    assert "reset" in str(e)
    # MicroPython's TLS layer hands socket errors up negated.
    e = error(OSError(-errno.ECONNREFUSED), peer, True, True, False, "write")
    assert "connection refused" in str(e)
    # mbedTLS's verification text (MicroPython raises ValueError from the first I/O).
    e = error(ValueError("The certificate is not correctly signed by the trusted CA\n"),
              peer, True, True, False, "write")
    assert "verification failed" in str(e) and "unknown CA" in str(e)
    e = error(ValueError("The certificate Common Name (CN) does not match with the expected CN"),
              peer, True, True, False, "read")
    assert "host name mismatch" in str(e)
    e = error(ValueError("The certificate validity has expired"), peer, True, True, False, "read")
    assert "expired" in str(e)
    # An alert, or EOF, before the first byte on TLS: the client certificate was refused.
    alert = OSError(-30592, "SSL - A fatal alert message was received from our peer")
    e = error(alert, peer, True, True, True, "read")
    assert "rejected the client certificate" in str(e)
    e = error(None, peer, True, True, False, "read")
    assert "requires a client certificate" in str(e)
    # ... but not once bytes have flowed.
    e = error(alert, peer, True, False, True, "read")
    assert "client certificate" not in str(e) and "TLS" in str(e)
    # A handshake that fails for another reason says so.
    e = error(OSError(-29312, "SSL - Bad input parameters"), peer, True, True, False, "connect")
    assert "TLS handshake" in str(e)
