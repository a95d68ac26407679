"""Custom authorizers (aws-iot-spec §2): the MQTT username query, token signatures, and
the Lambda contract, with Python callables standing in for Lambdas.

The endpoint calls :meth:`Authorizers.authenticate` with what the CONNECT and the TLS
handshake gave it, and gets an :class:`AuthResult` (policies, principal, timers) or an
:class:`AuthorizerError` (refuse the connection: CONNACK 0x86 / 0x87, §1.8).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

Json = Any
AuthorizerFunction = Callable[[dict[str, Json]], dict[str, Json]]

NAME_PARAM = "x-amz-customauthorizer-name"
SIGNATURE_PARAM = "x-amz-customauthorizer-signature"
# The SDKs append metrics to the username: SDK=..., Version=..., Platform=..., Metadata=(...)
SDK_METRIC_PARAMS = ("SDK", "Version", "Platform", "Metadata")

MIN_TIMER_S, MAX_TIMER_S = 300, 86400  # [CONFIG-CUSTOM-AUTH]
MAX_POLICY_DOCUMENTS = 10
MAX_POLICY_CHARS = 2048
_PRINCIPAL_ID = re.compile(r"[a-zA-Z0-9]{1,128}\Z")


class AuthorizerError(Exception):
    """Authentication failed; ``reason`` says why (for logs), ``not_authorized`` picks the
    CONNACK code: True → 0x87 Not authorized, False → 0x86 Bad User Name or Password."""

    def __init__(self, reason: str, *, not_authorized: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_authorized = not_authorized


@dataclass(frozen=True)
class ParsedUsername:
    """A CONNECT username split the way AWS reads it (§2.1, §2.2)."""

    raw: str
    user: str  # the part before the first '?'
    params: dict[str, str]  # URL-decoded query parameters, metrics included
    authorizer_name: str | None
    signature: str | None
    sdk_metrics: dict[str, str]

    def token(self, token_key_name: str | None) -> str | None:
        """The token under ``token_key_name``, if both exist."""
        return self.params.get(token_key_name) if token_key_name else None


@dataclass(frozen=True)
class HttpRequest:
    """The WebSocket upgrade request of a connection: where §2.1 lets the authorizer
    name, signature and token travel instead of the CONNECT username."""

    headers: dict[str, str]  # names lower-cased
    query: str = ""  # without the '?'

    def param(self, name: str) -> str | None:
        """A query parameter (URL-decoded), else a header; None if neither has it."""
        for part in self.query.split("&") if self.query else ():
            key, _, value = part.partition("=")
            if unquote(key) == name:
                return unquote(value)
        return self.headers.get(name.lower())


def parse_username(username: str | None) -> ParsedUsername:
    """Split ``user?name=...&signature=...&tok=...&SDK=...`` into its parts.

    The query is what follows the first ``?``; it is split on ``&`` and each value
    URL-decoded. A second ``?`` is malformed: IoT Core rejected such usernames without
    invoking the authorizer [JAVA154]. So is a parameter without ``=`` or an empty key.
    """
    raw = username or ""
    user, sep, query = raw.partition("?")
    params: dict[str, str] = {}
    if sep:
        if "?" in query:
            raise AuthorizerError("malformed username: more than one '?'", not_authorized=False)
        for part in query.split("&"):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise AuthorizerError(
                    f"malformed username parameter: {part!r}", not_authorized=False
                )
            params[unquote(key)] = unquote(value)
    metrics = {k: params[k] for k in SDK_METRIC_PARAMS if k in params}
    return ParsedUsername(
        raw, user, params, params.get(NAME_PARAM), params.get(SIGNATURE_PARAM), metrics
    )


def verify_token_signature(token: str, signature_b64: str, public_key_pem: str) -> bool:
    """True if ``signature_b64`` is base64(RSA-SHA256-PKCS#1v1.5(token)) under the key."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    except (ValueError, TypeError):
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, token.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass
class AuthResult:
    """The authorizer's verdict, as the Lambda response of [CONFIG-CUSTOM-AUTH]."""

    is_authenticated: bool
    principal_id: str
    policy_documents: list[dict[str, Json]]
    disconnect_after_s: int
    refresh_after_s: int

    @classmethod
    def from_response(cls, response: Json) -> AuthResult:
        """Validate a Lambda response; a malformed one fails authentication."""
        if not isinstance(response, dict):
            raise AuthorizerError("authorizer response is not an object")
        if response.get("isAuthenticated") is not True:
            raise AuthorizerError("authorizer returned isAuthenticated false")
        principal = response.get("principalId")
        if not isinstance(principal, str) or not _PRINCIPAL_ID.match(principal):
            raise AuthorizerError("principalId must be 1-128 alphanumeric characters")
        timers = {}
        for key in ("disconnectAfterInSeconds", "refreshAfterInSeconds"):
            value = response.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise AuthorizerError(f"{key} is required")
            if not MIN_TIMER_S <= value <= MAX_TIMER_S:
                raise AuthorizerError(f"{key} must be within {MIN_TIMER_S}..{MAX_TIMER_S}")
            timers[key] = value
        docs_raw = response.get("policyDocuments")
        if not isinstance(docs_raw, list) or len(docs_raw) > MAX_POLICY_DOCUMENTS:
            raise AuthorizerError("policyDocuments must be a list of at most 10 documents")
        docs = []
        for doc in docs_raw:
            text = doc if isinstance(doc, str) else json.dumps(doc)
            if len(text) > MAX_POLICY_CHARS:
                raise AuthorizerError("a policy document exceeds 2048 characters")
            parsed = json.loads(text) if isinstance(doc, str) else doc
            if not isinstance(parsed, dict):
                raise AuthorizerError("a policy document is not an object")
            docs.append(parsed)
        return cls(
            True,
            principal,
            docs,
            timers["disconnectAfterInSeconds"],
            timers["refreshAfterInSeconds"],
        )


@dataclass
class CustomAuthorizer:
    """A registered authorizer: a function (the Lambda) or a token → response table.

    ``token_key_name`` and ``public_keys`` (name → PEM) are needed only when signing is
    enabled (the default) [CONFIG-CUSTOM-AUTH].
    """

    name: str
    function: AuthorizerFunction | None = None
    tokens: dict[str, dict[str, Json]] = field(default_factory=dict)
    token_key_name: str | None = None
    public_keys: dict[str, str] = field(default_factory=dict)
    signing_disabled: bool = False
    enabled: bool = True

    def invoke(self, event: dict[str, Json]) -> dict[str, Json]:
        """Run the authorizer on an event; a table looks the token up."""
        if self.function is not None:
            return self.function(event)
        response = self.tokens.get(event.get("token") or "")
        if response is None:
            return {"isAuthenticated": False}
        return response


class Authorizers:
    """The account's custom authorizers, with an optional default (domain configuration)."""

    def __init__(self) -> None:
        self.authorizers: dict[str, CustomAuthorizer] = {}
        self.default: str | None = None

    def register(self, authorizer: CustomAuthorizer, *, default: bool = False) -> None:
        """Add (or replace) an authorizer; ``default`` makes it the endpoint's default."""
        if not authorizer.signing_disabled and (
            not authorizer.token_key_name or not authorizer.public_keys
        ):
            raise ValueError("a signing authorizer needs token_key_name and public_keys")
        self.authorizers[authorizer.name] = authorizer
        if default:
            self.default = authorizer.name

    def build_event(
        self,
        authorizer: CustomAuthorizer,
        parsed: ParsedUsername,
        *,
        password: bytes | None,
        client_id: str,
        server_name: str | None,
        signature_verified: bool,
        connection_id: str | None = None,
        http: HttpRequest | None = None,
        token: str | None = None,
    ) -> dict[str, Json]:
        """The Lambda event of [CONFIG-CUSTOM-AUTH] for a connection.

        Only what this connection type has: ``http`` (headers and query string) and the
        ``"http"`` protocol only for MQTT over WebSocket; ``protocolData.mqtt`` with the
        username as sent (query included, never one built from HTTP credentials), the
        password base64-encoded, and the client id, each only when the CONNECT had one.
        """
        mqtt: dict[str, Json] = {}
        if parsed.raw:
            mqtt["username"] = parsed.raw
        if password is not None:
            mqtt["password"] = base64.b64encode(password).decode("ascii")
        if client_id:
            mqtt["clientId"] = client_id
        event: dict[str, Json] = {}
        if token is None:
            token = parsed.token(authorizer.token_key_name)
        if token is not None:
            event["token"] = token
        event["signatureVerified"] = signature_verified
        event["protocols"] = ["tls", "http", "mqtt"] if http is not None else ["tls", "mqtt"]
        protocol_data: dict[str, Json] = {}
        if server_name is not None:
            protocol_data["tls"] = {"serverName": server_name}
        if http is not None:
            protocol_data["http"] = {
                "headers": dict(http.headers),
                "queryString": "?" + http.query if http.query else "",
            }
        if mqtt:
            protocol_data["mqtt"] = mqtt
        event["protocolData"] = protocol_data
        event["connectionMetadata"] = {"id": connection_id or str(uuid.uuid4())}
        return event

    def authenticate(
        self,
        *,
        username: str | None,
        password: bytes | None,
        client_id: str,
        server_name: str | None = None,
        connection_id: str | None = None,
        http: HttpRequest | None = None,
    ) -> AuthResult:
        """Authenticate a CONNECT through the named (or default) authorizer.

        ``http``: the WebSocket upgrade request; the authorizer name, signature and token
        are taken from the username first, then from its query string or headers (§2.1).

        Raises :class:`AuthorizerError` for a malformed username, an unknown or disabled
        authorizer, a missing or bad token signature (when signing is enabled), or a
        negative or malformed authorizer response.
        """
        parsed = parse_username(username)

        def find(key: str | None, from_username: str | None) -> str | None:
            if from_username is not None or http is None or not key:
                return from_username
            return http.param(key)

        name = find(NAME_PARAM, parsed.authorizer_name) or self.default
        if name is None:
            raise AuthorizerError("no authorizer named and no default authorizer")
        authorizer = self.authorizers.get(name)
        if authorizer is None or not authorizer.enabled:
            raise AuthorizerError(f"unknown or disabled authorizer: {name}")
        key = authorizer.token_key_name
        token = find(key, parsed.token(key))
        signature = find(SIGNATURE_PARAM, parsed.signature)
        verified = False
        if not authorizer.signing_disabled:
            if token is None or signature is None:
                raise AuthorizerError("signing is enabled: token and signature are required")
            verified = any(
                verify_token_signature(token, signature, pem)
                for pem in authorizer.public_keys.values()
            )
            if not verified:
                raise AuthorizerError("token signature does not verify")
        event = self.build_event(
            authorizer,
            parsed,
            password=password,
            client_id=client_id,
            server_name=server_name,
            signature_verified=verified,
            connection_id=connection_id,
            http=http,
            token=token,
        )
        try:
            response = authorizer.invoke(event)
        except Exception as e:  # the Lambda failed: the connection is refused
            raise AuthorizerError(f"authorizer raised {type(e).__name__}: {e}") from e
        return AuthResult.from_response(response)
