"""AWS IoT custom authorizers: the credentials placed exactly as AWS expects.

    from mqtt_v5.aws.authorizer import authorizer_client
    client = authorizer_client(endpoint, "device-7", authorizer_name="MyAuth",
                               token_key_name="token", token=token, signature=signature,
                               ca="AmazonRootCA1.pem")
    await client.connect()

Two ways to reach AWS with a custom authorizer [aws-iot-spec 1.2, 2.1]:

- ``transport="mqtt"``: MQTT over TLS on port 443 with ALPN ``mqtt``; the authorizer
  name, the signature (URL-encoded) and ``<tokenKeyName>=<token>`` ride in the CONNECT
  username's query string (``user?x-amz-customauthorizer-name=...&...``, ``?`` then
  ``&``, never a second ``?``); the password is passed through. Needs ALPN (CPython).
- ``transport="wss"``: MQTT over WebSocket on 443, credentials as HTTP headers of the
  Upgrade request (or, with ``in_headers=False``, as query parameters). No ALPN needed:
  the way for stock MicroPython.

``transport="auto"`` (default) picks "mqtt" where the runtime has ALPN, else "wss".
The signature is base64(RSA-SHA256(token)) made with the key whose public half was
given to ``create-authorizer``; the device normally receives token and signature
ready-made.
"""

from mqtt_v5.aws.connect import AwsClient, has_alpn
from mqtt_v5.client import ConnectOptions
from mqtt_v5.errors import UsageError
from mqtt_v5.tls import TlsConfig
from mqtt_v5.ws import quote

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Optional, Union  # noqa: F401

NAME_PARAM = "x-amz-customauthorizer-name"
SIGNATURE_PARAM = "x-amz-customauthorizer-signature"


def authorizer_params(authorizer_name=None, signature=None, token_key_name=None, token=None):
    """The (name, value) pairs AWS reads, in the SDK's order, not yet encoded."""
    out = []
    if authorizer_name:
        out.append((NAME_PARAM, authorizer_name))
    if signature:
        out.append((SIGNATURE_PARAM, signature))
    if token_key_name and token is not None:
        out.append((token_key_name, token))
    elif (token_key_name is None) != (token is None):
        raise UsageError("a token needs its token_key_name, and a token_key_name its token")
    return out


def authorizer_username(username=None, authorizer_name=None, signature=None,
                        token_key_name=None, token=None):
    # type: (Optional[str], Optional[str], Optional[str], Optional[str], Optional[str]) -> str
    """The CONNECT username carrying the authorizer query: each pair appended with ``?``
    (the first) or ``&``; values URL-encoded (a signature that already holds ``%`` is
    taken as encoded, as the AWS SDK does)."""
    u = username or ""
    for k, v in authorizer_params(authorizer_name, signature, token_key_name, token):
        if not (k == SIGNATURE_PARAM and "%" in v):
            v = quote(v)
        u += ("&" if "?" in u else "?") + quote(k) + "=" + v
    return u


def authorizer_client(endpoint, client_id, authorizer_name=None, token_key_name=None,
                      token=None, signature=None, username=None, password=None, ca=None,
                      transport="auto", port=443, server_hostname=None, path="/mqtt",
                      in_headers=True, keep_alive=300, clean_start=False,
                      session_expiry_interval=3600, **options):
    """An ``AwsClient`` that authenticates through a custom authorizer (see the module
    docstring); ``ca`` verifies the endpoint (Amazon Root CA 1), SNI is
    ``server_hostname`` (default ``endpoint``)."""
    if transport == "auto":
        transport = "mqtt" if has_alpn() else "wss"
    sni = server_hostname or endpoint
    host = "[%s]" % endpoint if ":" in endpoint else endpoint
    if transport == "mqtt":
        if not has_alpn():
            raise UsageError("a custom authorizer over MQTT needs TLS ALPN 'mqtt', which this "
                             "MicroPython firmware lacks: use transport='wss'")
        tls = TlsConfig(ca=ca, server_hostname=sni, alpn=["mqtt"])
        user = authorizer_username(username, authorizer_name, signature, token_key_name, token)
        target = "mqtts://%s:%d" % (host, port)
    elif transport == "wss":
        tls = TlsConfig(ca=ca, server_hostname=sni)
        params = authorizer_params(authorizer_name, signature, token_key_name, token)
        user = username
        url = "wss://%s:%d%s" % (host, port, path)
        target = _ws_opener(url, tls, params if in_headers else None,
                            None if in_headers else params, options.get("connect_timeout", 10))
    else:
        raise UsageError("transport is 'auto', 'mqtt' or 'wss'")
    o = ConnectOptions(client_id, clean_start=clean_start, keep_alive=keep_alive,
                       session_expiry_interval=session_expiry_interval, username=user,
                       password=password, tls=tls, **options)
    c = AwsClient(o, target)
    c.thing_name = client_id
    return c


def _ws_opener(url, tls, headers, query, timeout_s):
    async def open_link():
        from mqtt_v5.ws import open_ws

        return await open_ws(url, tls=tls, headers=headers, query=query, timeout_s=timeout_s)

    return open_link
