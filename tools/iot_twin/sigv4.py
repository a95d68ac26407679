"""AWS Signature Version 4 for MQTT over WebSocket: check a pre-signed upgrade request.

AWS IoT accepts ``wss://<endpoint>/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=
<key id>/<date>/<region>/iotdevicegateway/aws4_request&X-Amz-Date=...&X-Amz-SignedHeaders=
host&X-Amz-Signature=...`` (aws-iot-spec §1.2 [PROTO]: "MQTT over WebSocket, SigV4, 443").
The signature is the standard SigV4 query-string signature over ``GET``, the path, the
query without ``X-Amz-Signature`` (and without ``X-Amz-Security-Token``, which the AWS
SDKs append after signing: "IoT ... does not sign X-Amz-Security-Token", the Python SDK's
builder), the signed headers and the SHA-256 of the empty body.

The twin has no IAM: it knows a few static test credentials (key id -> secret) and which
IoT policies each one has. No I/O, no clock of its own.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "iotdevicegateway"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_CLOCK_SKEW_S = 15 * 60  # SigV4's usual allowance (UNVERIFIED for AWS IoT)
UNSIGNED = ("X-Amz-Signature", "X-Amz-Security-Token")


class SigV4Error(Exception):
    """The request is not validly signed; ``reason`` says why (for logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def parse_query(query: str) -> list[tuple[str, str]]:
    """``a=b&c=d`` split and URL-decoded, order kept."""
    out = []
    for part in query.split("&") if query else ():
        key, _, value = part.partition("=")
        out.append((unquote(key), unquote(value)))
    return out


def signature(
    secret: str,
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed_headers: list[str],
    amz_date: str,
    scope: str,
    region: str,
) -> str:
    """The hex SigV4 signature of a query-signed request."""
    canonical_query = "&".join(
        f"{_encode(k)}={_encode(v)}" for k, v in sorted(query) if k not in UNSIGNED
    )
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )
    canonical_request = "\n".join(
        [
            method,
            quote(path, safe="/-_.~"),
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            EMPTY_SHA256,
        ]
    )
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    return hmac.new(
        signing_key(secret, amz_date[:8], region), to_sign.encode(), hashlib.sha256
    ).hexdigest()


def verify_presigned(
    *,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    credentials: dict[str, str],
    now: float,
    region: str,
) -> str:
    """Check a pre-signed request; returns the access key id, or raises SigV4Error.

    ``headers`` have lower-case names; ``credentials`` maps access key id -> secret.
    """
    params = parse_query(query)
    found = dict(params)
    if found.get("X-Amz-Algorithm") != ALGORITHM:
        raise SigV4Error("X-Amz-Algorithm is not AWS4-HMAC-SHA256")
    try:
        key_id, date, cred_region, service, terminal = found["X-Amz-Credential"].split("/")
        amz_date = found["X-Amz-Date"]
        signed_headers = found["X-Amz-SignedHeaders"].split(";")
        given = found["X-Amz-Signature"]
    except (KeyError, ValueError) as e:
        raise SigV4Error(f"incomplete SigV4 query: {e}") from e
    if service != SERVICE or terminal != "aws4_request" or cred_region != region:
        raise SigV4Error(
            f"credential scope {date}/{cred_region}/{service} is not for this endpoint"
        )
    if not amz_date.startswith(date):
        raise SigV4Error("X-Amz-Date does not match the credential scope")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as e:
        raise SigV4Error("bad X-Amz-Date") from e
    age = now - signed_at.timestamp()
    expires = found.get("X-Amz-Expires")
    if age < -MAX_CLOCK_SKEW_S or (
        age > int(expires) if expires and expires.isdigit() else age > MAX_CLOCK_SKEW_S
    ):
        raise SigV4Error("the signature has expired or is from the future")
    secret = credentials.get(key_id)
    if secret is None:
        raise SigV4Error(f"unknown access key id {key_id}")
    expected = signature(
        secret,
        method=method,
        path=path,
        query=params,
        headers=headers,
        signed_headers=signed_headers,
        amz_date=amz_date,
        scope=f"{date}/{cred_region}/{service}/aws4_request",
        region=cred_region,
    )
    if not hmac.compare_digest(expected, given):
        raise SigV4Error("signature mismatch")
    return key_id
