"""Error texts kept out of RAM until raised: properties, _tls_ctx, transport and _open name
each error by an _E_* number (folded by const()) into a table of texts in a cold
module (_properties_rare, _pem, _neterr). Each number must have its text, and a few
errors read as they did when the texts sat at the raise."""

import re

import pytest
from test_layering import PKG

from mqtt_v5 import _neterr, _pem, _properties_rare
from mqtt_v5 import properties as P
from mqtt_v5.errors import ProtocolError, UsageError
from mqtt_v5.tls import TlsConfig
from mqtt_v5.transport import parse_url


@pytest.mark.parametrize(("module", "table"), [
    ("properties.py", _properties_rare._TEXTS),
    ("_tls_ctx.py", _pem._TEXTS),
    ("transport.py _open.py", _neterr._USAGE),  # (parse_url's and open_connection's in _open)
])
def test_every_error_number_has_its_text(module, table):
    numbers = [int(n) for name in module.split()
               for n in re.findall(r"^_E_\w+ = const\((\d+)\)$", (PKG / name).read_text(), re.M)]
    assert sorted(numbers) == list(range(len(table)))


def test_the_texts_read_as_before():
    with pytest.raises(UsageError, match=r"^unknown property 153$"):
        P.size({0x99: 1}, 1 << 3)
    with pytest.raises(UsageError, match=r"^bad value for property 0x23: 0$"):
        P.size({P.PROP_TOPIC_ALIAS: 0}, 1 << 3)
    r = P.Reader().reset(b"\x03\x23\x00\x00", 0, 4)
    with pytest.raises(ProtocolError, match=r"^property 0x23 must not be 0 \(reason code 0x82\)$"):
        P.check(r, 1 << 3)
    with pytest.raises(ProtocolError, match=r"^packet shorter than its contents") as e:
        P.Reader().reset(b"\x01", 0, 1).u16()
    assert e.value.reason_code == 0x81
    with pytest.raises(UsageError, match=r"^bad port in 'mqtt://h:0'$"):
        parse_url("mqtt://h:0")
    with pytest.raises(UsageError, match=r"^unsupported URL scheme 'http' \(use mqtt:// or"):
        parse_url("http://h")
    with pytest.raises(UsageError, match=r"^TLS: the client key is neither PEM nor DER$"):
        TlsConfig(cert=b"\x30\x00", key=b"junk").context()
