"""Custom authorizers through mqtt_v5.aws.authorizer against the twin: TLS 443 with ALPN
``mqtt`` (CPython) and MQTT over WebSocket (headers or query), good and bad signatures."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from iot_twin.authorizer import CustomAuthorizer, parse_username
from mqtt_v5 import ConnectRefused
from mqtt_v5.aws.authorizer import authorizer_client, authorizer_username
from mqtt_v5.aws.shadow import Shadow

from .conftest import run

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TOKEN = "tok-123=="


def sign(token: str, key=KEY) -> str:
    return base64.b64encode(key.sign(token.encode(), padding.PKCS1v15(),
                                     hashes.SHA256())).decode()


def lambda_fn(event):
    if event.get("token") != TOKEN or not event.get("signatureVerified"):
        return {"isAuthenticated": False}
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
    return {"isAuthenticated": True, "principalId": "dev7", "disconnectAfterInSeconds": 3600,
            "refreshAfterInSeconds": 300, "policyDocuments": [json.dumps(policy)]}


@pytest.fixture
def auth_twin(twin):
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    twin.call(twin.twin.register_authorizer, CustomAuthorizer(
        "DevAuth", function=lambda_fn, token_key_name="token", public_keys={"k1": pem}))
    return twin


def test_username_as_aws_reads_it():
    sig = sign(TOKEN)
    u = authorizer_username("alice", "DevAuth", sig, "token", TOKEN)
    assert u.count("?") == 1
    parsed = parse_username(u)   # the twin's parser, written from AWS's documentation
    assert parsed.user == "alice"
    assert parsed.authorizer_name == "DevAuth"
    assert parsed.signature == sig
    assert parsed.token("token") == TOKEN
    assert authorizer_username("u?SDK=x", "A") == "u?SDK=x&x-amz-customauthorizer-name=A"
    already_encoded = authorizer_username(None, signature="ab%3D")
    assert already_encoded == "?x-amz-customauthorizer-signature=ab%3D"


def client(twin, transport, signature, **kw):
    port = twin.port("alpn" if transport == "mqtt" else "wss")
    return authorizer_client("127.0.0.1", "dev-7", authorizer_name="DevAuth",
                             token_key_name="token", token=TOKEN, signature=signature,
                             ca=twin.ca, transport=transport, port=port,
                             server_hostname="localhost", **kw)


@pytest.mark.parametrize(("transport", "kw"), [
    ("mqtt", {}),
    ("wss", {}),
    ("wss", {"in_headers": False}),
], ids=["alpn-mqtt", "wss-headers", "wss-query"])
def test_connect_and_use_a_shadow(auth_twin, transport, kw):
    async def main():
        c = client(auth_twin, transport, sign(TOKEN), **kw)
        await c.connect()
        s = Shadow(c, "dev-7")
        acc = await s.update(reported={"via": transport})
        assert acc["state"]["reported"] == {"via": transport}
        assert (await s.get())["state"]["reported"] == {"via": transport}
        await c.disconnect()

    run(main())


@pytest.mark.parametrize("transport", ["mqtt", "wss"])
def test_bad_signature_is_refused(auth_twin, transport):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def main():
        c = client(auth_twin, transport, sign(TOKEN, other))
        with pytest.raises(ConnectRefused) as e:
            await c.connect()
        assert e.value.reason_code in (0x86, 0x87)

    run(main())


EVENTS: list = []


def test_password_and_username_reach_the_authorizer_as_aws_passes_them(twin):
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def recording(event):
        EVENTS.append(event)
        return lambda_fn(event)

    twin.call(twin.twin.register_authorizer, CustomAuthorizer(
        "DevAuth", function=recording, token_key_name="token", public_keys={"k1": pem}))

    async def main():
        c = client(twin, "mqtt", sign(TOKEN), username="alice", password=b"s3cret")
        await c.connect()
        await c.disconnect()

    run(main())
    mqtt = EVENTS[-1]["protocolData"]["mqtt"]
    assert base64.b64decode(mqtt["password"]) == b"s3cret"
    assert mqtt["username"].startswith("alice?x-amz-customauthorizer-name=DevAuth&")
    assert mqtt["clientId"] == "dev-7"
    assert EVENTS[-1]["token"] == TOKEN
    assert EVENTS[-1]["signatureVerified"] is True


def test_wss_link_reopens_after_a_drop(auth_twin):
    """Over WebSocket the client's target is a function that opens a new link: after a
    drop the client reconnects through it (new TLS, new upgrade with the credentials)."""
    import asyncio

    from netutil import FaultProxy

    from mqtt_v5 import ReconnectConfig

    proxy = FaultProxy("127.0.0.1", auth_twin.port("wss")).start()
    try:
        async def main():
            c = authorizer_client("127.0.0.1", "dev-7", authorizer_name="DevAuth",
                                  token_key_name="token", token=TOKEN, signature=sign(TOKEN),
                                  ca=auth_twin.ca, transport="wss", port=proxy.port,
                                  server_hostname="localhost",
                                  reconnect_config=ReconnectConfig(initial_delay=0.1,
                                                                   max_delay=0.3, jitter=0))
            events = []
            c.on_connection_event(events.append)
            await c.connect()
            s = Shadow(c, "dev-7")
            await s.update(reported={"n": 1})
            proxy.cut()
            for _ in range(100):
                if sum(type(e).__name__ == "Connected" for e in events) == 2:
                    break
                await asyncio.sleep(0.05)
            assert (await s.update(reported={"n": 2}))["state"] == {"reported": {"n": 2}}
            assert proxy.connections == 2
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()
