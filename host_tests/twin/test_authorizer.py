"""Custom authorizers (aws-iot-spec §2)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from iot_twin.authorizer import (
    AuthorizerError,
    Authorizers,
    AuthResult,
    CustomAuthorizer,
    parse_username,
    verify_token_signature,
)

METRICS = (
    "SDK=IoTDeviceSDK/Python&Platform=Unix&Metadata=(CRTVersion=0.36.1;IoTSDKVersion=1.31.0;"
    "IoTSDKFeature=F/5,G/A,I/A;IoTSDKMetricsVersion=1)"
)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(key: rsa.RSAPrivateKey, token: str) -> str:
    """What `openssl dgst -sha256 -sign key.pem | openssl base64` gives (§2.1)."""
    return base64.b64encode(key.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


GOOD = {
    "isAuthenticated": True,
    "principalId": "abc123",
    "disconnectAfterInSeconds": 3600,
    "refreshAfterInSeconds": 300,
    "policyDocuments": [
        {
            "Version": "2012-10-17",
            "Statement": [{"Action": "iot:Connect", "Effect": "Allow", "Resource": "*"}],
        }
    ],
}


def test_parse_username_as_the_python_sdk_builds_it() -> None:
    """§2.2/brokers-and-peers §4.3: the builder's username with the metrics suffix."""
    parsed = parse_username(
        "devuser?x-amz-customauthorizer-name=MyAuthorizer&x-amz-customauthorizer-signature=abc%3D"
        "&token=tok123&" + METRICS
    )
    assert parsed.user == "devuser"
    assert parsed.authorizer_name == "MyAuthorizer"
    assert parsed.signature == "abc="  # URL-decoded
    assert parsed.token("token") == "tok123"
    assert parsed.token(None) is None
    assert parsed.sdk_metrics["SDK"] == "IoTDeviceSDK/Python"
    assert parsed.sdk_metrics["Metadata"].startswith("(CRTVersion=0.36.1;")
    assert parse_username("?" + METRICS).user == ""
    assert parse_username("plain").params == {}
    assert parse_username(None).raw == ""


@pytest.mark.parametrize(
    "username",
    [
        # §2.1 [JAVA154]: a second '?' was rejected by IoT Core
        "u?x-amz-customauthorizer-name=A&x-amz-customauthorizer-signature=s?SDK=JavaV2&Version=0.15",
        "u?novalue",
        "u?=v",
    ],
)
def test_malformed_usernames(username: str) -> None:
    with pytest.raises(AuthorizerError):
        parse_username(username)


def test_signature_verification(key: rsa.RSAPrivateKey) -> None:
    """§2.1: base64(RSA-SHA256(token)) against the registered public key."""
    pem = public_pem(key)
    assert verify_token_signature("tok", sign(key, "tok"), pem)
    assert not verify_token_signature("tok2", sign(key, "tok"), pem)
    assert not verify_token_signature("tok", "not base64!", pem)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not verify_token_signature("tok", sign(other, "tok"), pem)


def registry_with(key: rsa.RSAPrivateKey, fn: Any) -> Authorizers:
    auths = Authorizers()
    auths.register(
        CustomAuthorizer(
            "MyAuth", function=fn, token_key_name="token", public_keys={"k1": public_pem(key)}
        )
    )
    return auths


def test_event_shape_and_result(key: rsa.RSAPrivateKey) -> None:
    """§2.3: the Lambda event (password base64, token, signatureVerified, tls.serverName,
    connectionMetadata.id) and a validated result."""
    events: list[dict[str, Any]] = []

    def fn(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return GOOD

    auths = registry_with(key, fn)
    sig = quote(sign(key, "tok123"), safe="")
    username = (
        "alice?x-amz-customauthorizer-name=MyAuth"
        f"&x-amz-customauthorizer-signature={sig}&token=tok123"
    )
    result = auths.authenticate(
        username=username,
        password=b"secret",
        client_id="c1",
        server_name="iot.example",
        connection_id="cid",
    )
    assert result == AuthResult(True, "abc123", GOOD["policyDocuments"], 3600, 300)
    assert events == [
        {
            "token": "tok123",
            "signatureVerified": True,
            "protocols": ["tls", "mqtt"],
            "protocolData": {
                "tls": {"serverName": "iot.example"},
                "mqtt": {
                    "clientId": "c1",
                    "username": username,
                    "password": base64.b64encode(b"secret").decode(),
                },
            },
            "connectionMetadata": {"id": "cid"},
        }
    ]


def test_bad_signature_never_reaches_the_function(key: rsa.RSAPrivateKey) -> None:
    called = []
    auths = registry_with(key, lambda e: called.append(e) or GOOD)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    username = (
        "u?x-amz-customauthorizer-name=MyAuth&x-amz-customauthorizer-signature="
        + quote(sign(other, "t"), safe="")
        + "&token=t"
    )
    with pytest.raises(AuthorizerError, match="signature"):
        auths.authenticate(username=username, password=None, client_id="c")
    with pytest.raises(AuthorizerError, match="required"):
        auths.authenticate(
            username="u?x-amz-customauthorizer-name=MyAuth&token=t", password=None, client_id="c"
        )
    assert called == []


def test_signing_disabled_default_authorizer_and_token_table() -> None:
    """§2.1: signing can be disabled; the name may be omitted with a default authorizer."""
    auths = Authorizers()
    auths.register(
        CustomAuthorizer(
            "Table", tokens={"t-1": GOOD}, token_key_name="tok", signing_disabled=True
        ),
        default=True,
    )
    result = auths.authenticate(username="u?tok=t-1&" + METRICS, password=None, client_id="c")
    assert result.principal_id == "abc123"
    with pytest.raises(AuthorizerError):
        auths.authenticate(username="u?tok=wrong", password=None, client_id="c")
    with pytest.raises(AuthorizerError, match="unknown"):
        auths.authenticate(
            username="u?x-amz-customauthorizer-name=Nope", password=None, client_id="c"
        )


def test_signing_authorizer_needs_keys() -> None:
    with pytest.raises(ValueError, match="token_key_name"):
        Authorizers().register(CustomAuthorizer("A", function=lambda e: GOOD))


@pytest.mark.parametrize(
    "change",
    [
        {"isAuthenticated": False},
        {"principalId": "has space"},
        {"principalId": "x" * 129},
        {"disconnectAfterInSeconds": 299},
        {"refreshAfterInSeconds": 86401},
        {"refreshAfterInSeconds": None},
        {"policyDocuments": [GOOD["policyDocuments"][0]] * 11},
        {"policyDocuments": [{"Statement": [], "pad": "x" * 2048}]},
        {"policyDocuments": "nope"},
    ],
)
def test_response_limits(change: dict[str, Any]) -> None:
    """§2.3: principalId [a-zA-Z0-9]{1,128}; timers 300..86400; <= 10 documents, 2048 chars."""
    with pytest.raises(AuthorizerError):
        AuthResult.from_response({**GOOD, **change})


def test_response_limits_accept_the_edges() -> None:
    result = AuthResult.from_response(
        {
            **GOOD,
            "principalId": "x" * 128,
            "disconnectAfterInSeconds": 86400,
            "refreshAfterInSeconds": 300,
        }
    )
    assert result.disconnect_after_s == 86400
    as_text = AuthResult.from_response({**GOOD, "policyDocuments": ['{"Statement": []}']})
    assert as_text.policy_documents == [{"Statement": []}]


def test_function_exception_refuses(key: rsa.RSAPrivateKey) -> None:
    def boom(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("lambda timeout")

    auths = Authorizers()
    auths.register(CustomAuthorizer("A", function=boom, signing_disabled=True), default=True)
    with pytest.raises(AuthorizerError, match="RuntimeError"):
        auths.authenticate(username="u", password=b"p", client_id="c")
