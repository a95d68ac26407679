"""Fleet provisioning, CA, registry and CBOR (aws-iot-spec §5)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from iot_twin import cbor
from iot_twin.ca import CertificateAuthority, certificate_id, load_cert
from iot_twin.provisioning import FleetProvisioning, evaluate_template, register_device
from iot_twin.registry import ACTIVE, PENDING_ACTIVATION, Registry
from iot_twin.services import ServiceLayer
from iot_twin.topics import parse_provisioning_request, parse_request

T0 = 1_700_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return float(self.now)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(clock=Clock())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fp(ca: CertificateAuthority, clock: Clock) -> FleetProvisioning:
    registry = Registry(None, clock=clock)
    registry.create_template("tpl", TEMPLATE)
    return FleetProvisioning(registry, ca, clock=clock, key_type="ec")


TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "SerialNumber": {"Type": "String"},
        "Location": {"Type": "String", "Default": "Seattle"},
        "AWS::IoT::Certificate::Id": {"Type": "String"},
    },
    "Mappings": {
        "LocationTable": {
            "Seattle": {"LocationUrl": "https://example.aws"},
            "Lab": {"LocationUrl": "https://lab.example"},
        }
    },
    "Conditions": {"IsLab": {"Fn::Equals": [{"Ref": "Location"}, "Lab"]}},
    "Resources": {
        "thing": {
            "Type": "AWS::IoT::Thing",
            "Properties": {
                "ThingName": {"Fn::Join": ["", ["dev_", {"Ref": "SerialNumber"}]]},
                "AttributePayload": {"serial": {"Ref": "SerialNumber"}},
                "ThingGroups": ["fleet"],
            },
            "OverrideSettings": {"AttributePayload": "MERGE"},
        },
        "certificate": {
            "Type": "AWS::IoT::Certificate",
            "Properties": {
                "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                "Status": "Active",
            },
        },
        "policy": {
            "Type": "AWS::IoT::Policy",
            "Properties": {
                "PolicyDocument": json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}
                        ],
                    }
                )
            },
        },
    },
    "DeviceConfiguration": {
        "LocationUrl": {"Fn::FindInMap": ["LocationTable", {"Ref": "Location"}, "LocationUrl"]},
        "Mode": {"Fn::If": ["IsLab", "lab", "field"]},
        "Topic": {"Fn::Sub": "fleet/${SerialNumber}/data"},
    },
}


def call(
    fp: FleetProvisioning, topic: str, body: Any, fmt: str = "json", **kw: Any
) -> tuple[str, Any]:
    req = parse_provisioning_request(topic)
    assert req is not None
    if isinstance(body, bytes):
        payload = body
    else:
        payload = cbor.dumps(body) if fmt == "cbor" else json.dumps(body).encode()
    ((out_topic, out),) = fp.handle(req, payload, **kw)
    return out_topic, cbor.loads(out) if fmt == "cbor" else json.loads(out)


def make_csr(cn: str = "dev") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# --- CreateKeysAndCertificate / CreateCertificateFromCsr --------------------------------


def test_create_keys_and_certificate(fp: FleetProvisioning, ca: CertificateAuthority) -> None:
    """§5.2: certificateId, certificatePem, privateKey, certificateOwnershipToken; the new
    certificate is PENDING_ACTIVATION and signed by the twin's CA."""
    topic, doc = call(fp, "$aws/certificates/create/json", {})
    assert topic == "$aws/certificates/create/json/accepted"
    assert set(doc) == {
        "certificateId",
        "certificatePem",
        "privateKey",
        "certificateOwnershipToken",
    }
    der = load_cert(doc["certificatePem"]).public_bytes(serialization.Encoding.DER)
    assert doc["certificateId"] == hashlib.sha256(der).hexdigest()  # AWS's id form
    assert ca.issued(doc["certificatePem"])
    assert fp.registry.certificates[doc["certificateId"]].status == PENDING_ACTIVATION
    key = serialization.load_pem_private_key(doc["privateKey"].encode(), None)
    assert (
        key.public_key().public_numbers()
        == load_cert(doc["certificatePem"]).public_key().public_numbers()
    )  # type: ignore[union-attr]


def test_create_keys_default_is_rsa_2048(ca: CertificateAuthority) -> None:
    fp = FleetProvisioning(Registry(None), ca)
    doc = fp.create_keys_and_certificate()
    key = load_cert(doc["certificatePem"]).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048


def test_create_from_csr(fp: FleetProvisioning, ca: CertificateAuthority) -> None:
    """§5.2 CreateCertificateFromCsr: keeps the CSR's subject; no private key returned."""
    topic, doc = call(
        fp,
        "$aws/certificates/create-from-csr/json",
        {"certificateSigningRequest": make_csr("abc")},
    )
    assert topic.endswith("/accepted")
    assert set(doc) == {"certificateOwnershipToken", "certificateId", "certificatePem"}
    cert = load_cert(doc["certificatePem"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "abc"
    assert ca.issued(doc["certificatePem"])


@pytest.mark.parametrize(
    "body",
    [
        {
            "certificateSigningRequest": (
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            )
        },
        {"certificateSigningRequest": ""},
        {},
        b"not json",
    ],
)
def test_bad_csr_is_rejected(fp: FleetProvisioning, body: Any) -> None:
    """§5.2 rejected document shape: statusCode, errorCode, errorMessage."""
    topic, doc = call(fp, "$aws/certificates/create-from-csr/json", body)
    assert topic == "$aws/certificates/create-from-csr/json/rejected"
    assert set(doc) == {"statusCode", "errorCode", "errorMessage"}
    assert doc["statusCode"] == 400
    assert doc["errorCode"] in ("InvalidCSR", "InvalidPayload")
    assert not fp.registry.certificates


# --- RegisterThing ----------------------------------------------------------------------


def test_register_thing_end_to_end(fp: FleetProvisioning) -> None:
    """§5.2/§5.3: RegisterThing creates the thing, activates and attaches the certificate,
    attaches the policy, and returns thingName and the resolved deviceConfiguration."""
    _, created = call(fp, "$aws/certificates/create/json", b"")
    topic, doc = call(
        fp,
        "$aws/provisioning-templates/tpl/provision/json",
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "42"},
        },
    )
    assert topic == "$aws/provisioning-templates/tpl/provision/json/accepted"
    assert doc == {
        "deviceConfiguration": {
            "LocationUrl": "https://example.aws",
            "Mode": "field",
            "Topic": "fleet/42/data",
        },
        "thingName": "dev_42",
    }
    reg = fp.registry
    cert = reg.certificates[created["certificateId"]]
    assert cert.status == ACTIVE
    assert cert.things == ["dev_42"]
    assert len(cert.policies) == 1
    assert reg.things["dev_42"].attributes == {"serial": "42"}
    # The token is single-use.
    _, again = call(
        fp,
        "$aws/provisioning-templates/tpl/provision/json",
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "42"},
        },
    )
    assert again["errorCode"] == "InvalidCertificateOwnershipToken"


def test_empty_token_gets_the_observed_error(fp: FleetProvisioning) -> None:
    """§5.2 [JS69]: exact text observed on the live service."""
    _, doc = call(
        fp, "$aws/provisioning-templates/tpl/provision/json", {"certificateOwnershipToken": ""}
    )
    assert doc == {
        "statusCode": 400,
        "errorCode": "InvalidCertificateOwnershipToken",
        "errorMessage": "Certificate ownership token cannot be empty.",
    }


def test_token_expires_after_an_hour_and_takes_the_certificate(
    fp: FleetProvisioning, clock: Clock
) -> None:
    """§5.3 [FP-API]: the token lasts 1 hour; an unused certificate is then deleted."""
    created = fp.create_keys_and_certificate()
    clock.now += 3599
    assert created["certificateOwnershipToken"] in fp.registry.tokens
    clock.now += 1
    _, doc = call(
        fp,
        "$aws/provisioning-templates/tpl/provision/json",
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "1"},
        },
    )
    assert doc["errorCode"] == "InvalidCertificateOwnershipToken"
    assert created["certificateId"] not in fp.registry.certificates


def test_pre_provisioning_hook(fp: FleetProvisioning) -> None:
    """§5.3 pre-provisioning hook: sees AWS's event; may override parameters or deny."""
    events: list[dict[str, Any]] = []

    def hook(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        if event["parameters"].get("SerialNumber") == "bad":
            return {"allowProvisioning": False}
        return {"allowProvisioning": True, "parameterOverrides": {"Location": "Lab"}}

    fp.set_pre_provisioning_hook("tpl", hook)
    created = fp.create_keys_and_certificate()
    body = {
        "certificateOwnershipToken": created["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "7"},
    }
    _, doc = call(
        fp,
        "$aws/provisioning-templates/tpl/provision/json",
        body,
        client_id="claim-1",
        claim_certificate_id="c0ffee",
    )
    assert doc["deviceConfiguration"]["Mode"] == "lab"
    assert events[0] == {
        "claimCertificateId": "c0ffee",
        "certificateId": created["certificateId"],
        "certificatePem": created["certificatePem"],
        "templateArn": "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/tpl",
        "clientId": "claim-1",
        "parameters": {"SerialNumber": "7"},
    }
    created = fp.create_keys_and_certificate()
    body = {
        "certificateOwnershipToken": created["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "bad"},
    }
    topic, doc = call(fp, "$aws/provisioning-templates/tpl/provision/json", body)
    assert topic.endswith("/rejected")
    assert doc["statusCode"] == 403
    assert "dev_bad" not in fp.registry.things


def test_unknown_template_and_missing_parameter(fp: FleetProvisioning) -> None:
    created = fp.create_keys_and_certificate()
    _, doc = call(
        fp,
        "$aws/provisioning-templates/nope/provision/json",
        {"certificateOwnershipToken": created["certificateOwnershipToken"]},
    )
    assert doc["statusCode"] == 404
    _, doc = call(
        fp,
        "$aws/provisioning-templates/tpl/provision/json",
        {"certificateOwnershipToken": created["certificateOwnershipToken"]},
    )
    assert doc["statusCode"] == 400
    assert "SerialNumber" in doc["errorMessage"]
    assert created["certificateOwnershipToken"] in fp.registry.tokens  # a failed attempt keeps it


def test_cbor_topics(fp: FleetProvisioning) -> None:
    """§5.1: the cbor topics take and give CBOR maps with the same field names."""
    topic, created = call(fp, "$aws/certificates/create/cbor", {}, fmt="cbor")
    assert topic == "$aws/certificates/create/cbor/accepted"
    topic, doc = call(
        fp,
        "$aws/provisioning-templates/tpl/provision/cbor",
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "9"},
        },
        fmt="cbor",
    )
    assert doc["thingName"] == "dev_9"
    topic, err = call(fp, "$aws/certificates/create-from-csr/cbor", b"\xff\x00", fmt="cbor")
    assert topic.endswith("/rejected")
    assert err["statusCode"] == 400


def test_template_intrinsics() -> None:
    body = {
        "Parameters": {"A": {"Type": "String"}},
        "Conditions": {
            "Yes": {
                "Fn::And": [
                    {"Fn::Not": [{"Fn::Equals": [{"Ref": "A"}, "x"]}]},
                    {"Fn::Or": [{"Condition": "Z"}, {"Fn::Equals": ["1", "1"]}]},
                ]
            },
            "Z": {"Fn::Equals": ["a", "b"]},
        },
        "Resources": {"gone": {"Type": "AWS::IoT::Thing", "Condition": "Z", "Properties": {}}},
        "DeviceConfiguration": {
            "sel": {"Fn::Select": [1, {"Fn::Split": [",", "p,q,r"]}]},
            "sub": {"Fn::Sub": ["${A}-${B}", {"B": "b"}]},
            "if": {"Fn::If": ["Yes", "y", "n"]},
        },
    }
    resources, config = evaluate_template(body, {"A": "a"})
    assert resources == {}
    assert config == {"sel": "q", "sub": "a-b", "if": "y"}


# --- CA, registry, persistence ----------------------------------------------------------


def test_ca_and_registry_persist(tmp_path: Path, clock: Clock) -> None:
    """Everything lives in the state dir: ca.pem at the top, things/<name>/cert.pem and key.pem."""
    ca = CertificateAuthority.load_or_create(tmp_path, clock=clock)
    assert (tmp_path / "ca.pem").read_text() == ca.cert_pem
    assert CertificateAuthority.load_or_create(tmp_path).cert_pem == ca.cert_pem
    reg = Registry(tmp_path, clock=clock)
    cert_id, cert_pem, key_pem = register_device(reg, ca, "dev1", key_type="ec")
    assert (tmp_path / "things/dev1/cert.pem").read_text() == cert_pem
    assert (tmp_path / "things/dev1/key.pem").read_text() == key_pem
    cert = load_cert(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev1"
    again = Registry(tmp_path)
    assert again.to_json() == reg.to_json()
    assert again.certificates[cert_id].things == ["dev1"]
    server_cert, _ = ca.server_credentials(tmp_path)
    san = (
        load_cert(server_cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_rogue_certificate_is_not_issued(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create()
    pem, _ = other.issue_device_cert("x", key_type="ec")
    assert not ca.issued(pem)
    assert certificate_id(pem) != certificate_id(ca.issue_device_cert("x", key_type="ec")[0])


def test_twin_restart_loses_nothing(tmp_path: Path) -> None:
    twin = ServiceLayer(tmp_path, key_type="ec")
    twin.registry.create_template("tpl", TEMPLATE)
    out = twin.provisioning.handle(parse_request("$aws/certificates/create/json"), b"{}")
    token = json.loads(out[0][1])["certificateOwnershipToken"]
    twin.shadows.handle(
        parse_request("$aws/things/t1/shadow/update"), b'{"state":{"desired":{"a":1}}}'
    )
    twin.jobs.create_job("j1", {"op": 1}, ["t1"])
    again = ServiceLayer(tmp_path, key_type="ec")
    body = json.dumps(
        {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "5"}}
    ).encode()
    ((topic, _),) = again.provisioning.handle(
        parse_request("$aws/provisioning-templates/tpl/provision/json"), body
    )
    assert topic.endswith("/accepted")
    assert again.shadows.document("t1")["version"] == 1  # type: ignore[index]
    assert again.jobs.execution("t1", "j1") is not None


# --- CBOR -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [  # RFC 8949 appendix A
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (1000, "1903e8"),
        (1000000, "1a000f4240"),
        (-1, "20"),
        (-1000, "3903e7"),
        ("", "60"),
        ("IETF", "6449455446"),
        ("\u00fc", "62c3bc"),
        ([1, [2, 3]], "8201820203"),
        ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
        (True, "f5"),
        (None, "f6"),
        (1.1, "fb3ff199999999999a"),
    ],
)
def test_cbor_vectors(value: Any, hex_bytes: str) -> None:
    assert cbor.dumps(value).hex() == hex_bytes
    assert cbor.loads(bytes.fromhex(hex_bytes)) == value


@pytest.mark.parametrize(
    ("hex_bytes", "value"),
    [
        ("f93c00", 1.0),
        ("fa47c35000", 100000.0),
        ("9fff", []),
        ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}),
        ("7f657374726561646d696e67ff", "streaming"),
        # Tag 1 (epoch time): cbor2 gives the datetime (the hand-written codec this
        # replaced ignored tags; AWS's provisioning payloads use none).
        ("c11a514b67b0", datetime(2013, 3, 21, 20, 4, tzinfo=UTC)),
    ],
)
def test_cbor_decodes_other_forms(hex_bytes: str, value: Any) -> None:
    assert cbor.loads(bytes.fromhex(hex_bytes)) == value


@pytest.mark.parametrize(
    "hex_bytes", ["", "18", "1c", "6261", "0000", "ff", "a1", "62c3", "7f01ff"]
)
def test_cbor_malformed(hex_bytes: str) -> None:
    with pytest.raises(cbor.CborError):
        cbor.loads(bytes.fromhex(hex_bytes))


_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text()
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=15,
)


@given(_json_like)
def test_cbor_round_trip(value: Any) -> None:
    assert cbor.loads(cbor.dumps(value)) == value
