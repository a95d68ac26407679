"""The twin endpoint's reserved-topic services and custom authorizers, end to end with
paho-mqtt 2.x (MQTT 5): Device Shadow (aws-iot-spec §3), Jobs (§4), Fleet Provisioning
(§5), custom authorizers over ALPN ``mqtt`` and over WebSocket (§2)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fleet_template import fleet_template

from iot_twin.authorizer import CustomAuthorizer
from twin._server_util import PahoClient, client_context, running_twin, wait_for


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path) as t:
        yield t


def _open(tw, name):
    creds = tw.thing(name)
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
    }
    cert = tw.call(tw.twin.registry.certificates.get, creds.certificate_id)

    def swap():
        cert.policies = []
        tw.twin.add_policy(f"open-{name}", doc, creds.certificate_id)

    tw.call(swap)


# --- Device Shadow -----------------------------------------------------------------------------


def test_shadow_update_get_delete_over_mqtt(tw):
    c = tw.paho("t1")
    base = "$aws/things/t1/shadow"
    assert (
        c.subscribe(
            f"{base}/update/accepted",
            f"{base}/update/delta",
            f"{base}/get/accepted",
            f"{base}/get/rejected",
            f"{base}/delete/accepted",
        )
        == [1] * 5
    )
    c.publish(f"{base}/get", b'{"clientToken":"g0"}')
    m = c.get()
    assert m.topic == f"{base}/get/rejected"
    assert json.loads(m.payload)["code"] == 404
    c.publish(
        f"{base}/update",
        json.dumps(
            {"state": {"desired": {"led": "on"}, "reported": {"led": "off"}}, "clientToken": "u1"}
        ).encode(),
    )
    got = {m.topic: json.loads(m.payload) for m in (c.get(), c.get())}
    assert got[f"{base}/update/accepted"]["clientToken"] == "u1"
    assert got[f"{base}/update/accepted"]["version"] == 1
    assert got[f"{base}/update/delta"]["state"] == {"led": "on"}
    c.publish(f"{base}/get", b'{"clientToken":"g1"}')
    doc = json.loads(c.get().payload)
    assert doc["state"]["delta"] == {"led": "on"}
    assert doc["clientToken"] == "g1"
    assert tw.call(tw.twin.get_shadow, "t1")["version"] == 1
    c.publish(f"{base}/delete", b"")
    assert c.get().topic == f"{base}/delete/accepted"
    assert tw.call(tw.twin.get_shadow, "t1") is None
    c.close()


def test_named_shadow_and_responses_go_to_subscribers(tw):
    # §3.1: shadow responses are ordinary topics: every subscriber sees them, and a
    # requester that did not subscribe gets nothing.
    _open(tw, "ops")
    ops = tw.paho("ops")
    ops.subscribe("$aws/things/t1/shadow/name/cfg/update/accepted")
    c = tw.paho("t1")
    c.publish("$aws/things/t1/shadow/name/cfg/update", b'{"state":{"reported":{"v":2}}}')
    assert json.loads(ops.get().payload)["state"] == {"reported": {"v": 2}}
    c.nothing()
    assert tw.call(tw.twin.get_shadow, "t1", "cfg")["state"]["reported"] == {"v": 2}
    ops.close()
    c.close()


def test_admin_shadow_update_reaches_the_device(tw):
    c = tw.paho("t1")
    c.subscribe("$aws/things/t1/shadow/update/delta")
    accepted = tw.call(tw.twin.update_shadow, "t1", {"state": {"desired": {"fan": 3}}})
    assert accepted["version"] == 1
    assert json.loads(c.get().payload)["state"] == {"fan": 3}
    c.close()


def test_other_things_shadow_is_not_allowed_by_the_default_policy(tw):
    c = tw.paho("t1")
    assert c.publish("$aws/things/t2/shadow/update", b'{"state":{}}') == 0x87
    assert c.subscribe("$aws/things/t2/shadow/update/accepted") == [0x87]
    c.close()


# --- Jobs --------------------------------------------------------------------------------------


def test_jobs_responses_go_to_the_requester_only(tw):
    # §4.1 [RESERVED], [JOBS-MQTT]: accepted/rejected are delivered to the requesting client
    # whether or not it subscribed, and to nobody else; notify-next goes to subscribers.
    _open(tw, "spy")
    spy = tw.paho("spy")
    spy.subscribe("$aws/things/t1/jobs/#")
    dev = tw.paho("t1")
    dev.subscribe("$aws/things/t1/jobs/notify-next")
    job_id = tw.call(tw.twin.add_job, "t1", {"operation": "reboot"}, "job-1")
    assert job_id == "job-1"
    m = dev.get()
    assert m.topic == "$aws/things/t1/jobs/notify-next"
    assert json.loads(m.payload)["execution"]["jobId"] == "job-1"
    dev.publish("$aws/things/t1/jobs/get", b'{"clientToken":"c1"}')
    m = dev.get()  # not subscribed to get/accepted, delivered anyway
    assert m.topic == "$aws/things/t1/jobs/get/accepted"
    body = json.loads(m.payload)
    assert body["clientToken"] == "c1"
    assert body["queuedJobs"][0]["jobId"] == "job-1"
    dev.publish("$aws/things/t1/jobs/start-next", b'{"clientToken":"c2"}')
    m = dev.get()
    assert m.topic == "$aws/things/t1/jobs/start-next/accepted"
    assert json.loads(m.payload)["execution"]["status"] == "IN_PROGRESS"
    dev.publish("$aws/things/t1/jobs/job-1/update", b'{"status":"SUCCEEDED"}')
    got = {dev.get().topic, dev.get().topic}
    # ... and the queue is empty now: notify-next with no execution [JOBS-NOTIFY].
    assert got == {"$aws/things/t1/jobs/job-1/update/accepted", "$aws/things/t1/jobs/notify-next"}
    spy_topics = []
    while True:
        try:
            spy_topics.append(spy.get(0.3).topic)
        except Exception:
            break
    # The spy saw the notifications, never an accepted/rejected answer meant for t1.
    assert "$aws/things/t1/jobs/notify-next" in spy_topics
    assert set(spy_topics) <= {"$aws/things/t1/jobs/notify", "$aws/things/t1/jobs/notify-next"}
    dev.close()
    spy.close()


# --- Fleet provisioning ------------------------------------------------------------------------

TEMPLATE = fleet_template(
    "dev_", {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]},
    {"Topic": {"Fn::Sub": "fleet/${SerialNumber}/data"}})


def test_fleet_provisioning_end_to_end(tw):
    # §5.3: claim certificate -> CreateKeysAndCertificate -> RegisterThing -> reconnect with
    # the new certificate as the new thing. Responses reach the requester through its
    # subscriptions (§5.2 "subscribe before publishing"), nobody else.
    tw.call(tw.twin.add_template, "fleet", TEMPLATE)
    _open(tw, "spy")
    spy = tw.paho("spy")
    spy.subscribe("$aws/certificates/create/json/accepted")
    claim = tw.paho("claim")
    claim.subscribe(
        "$aws/certificates/create/json/accepted",
        "$aws/provisioning-templates/fleet/provision/json/accepted",
        "$aws/provisioning-templates/fleet/provision/json/rejected",
    )
    claim.publish("$aws/certificates/create/json", b"")
    keys = json.loads(claim.get().payload)
    assert {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"} <= set(
        keys
    )
    spy.nothing()
    claim.publish(
        "$aws/provisioning-templates/fleet/provision/json",
        json.dumps(
            {
                "certificateOwnershipToken": keys["certificateOwnershipToken"],
                "parameters": {"SerialNumber": "42"},
            }
        ).encode(),
    )
    reg = json.loads(claim.get().payload)
    assert reg == {"thingName": "dev_42", "deviceConfiguration": {"Topic": "fleet/42/data"}}
    claim.close()
    # The new device connects with the certificate it was given.
    creds_dir = tw.twin.thing_dir("dev_42")
    dev = PahoClient("dev_42")
    dev.client.tls_set(
        ca_certs=tw.ca, certfile=str(creds_dir / "cert.pem"), keyfile=str(creds_dir / "key.pem")
    )
    dev.port = tw.port("mtls")
    dev.connect()
    assert dev.publish("fleet/42/data", b"hello") == 0
    dev.close()
    spy.close()


# --- custom authorizers ------------------------------------------------------------------------


@pytest.fixture
def authorizer(tw):
    """Authorizer ``TwinAuth`` (signing enabled, token key ``token``) that accepts token
    ``good`` with password ``secret`` and allows publish/receive/subscribe on ``ca/*``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    events = []
    arn = "arn:aws:iot:us-east-1:123456789012"

    def lambda_(event):
        events.append(event)
        ok = (
            event.get("token") == "good"
            and event["protocolData"]["mqtt"].get("password")
            == base64.b64encode(b"secret").decode()
        )
        return {
            "isAuthenticated": ok,
            "principalId": "alice",
            "disconnectAfterInSeconds": 3600,
            "refreshAfterInSeconds": 300,
            "policyDocuments": [
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "iot:Connect",
                            "Resource": f"{arn}:client/*",
                        },
                        {
                            "Effect": "Allow",
                            "Action": ["iot:Publish", "iot:Receive"],
                            "Resource": f"{arn}:topic/ca/*",
                        },
                        {
                            "Effect": "Allow",
                            "Action": "iot:Subscribe",
                            "Resource": f"{arn}:topicfilter/ca/*",
                        },
                    ],
                }
            ],
        }

    tw.call(
        tw.twin.register_authorizer,
        CustomAuthorizer(
            "TwinAuth", function=lambda_, token_key_name="token", public_keys={"k1": pub}
        ),
    )
    sig = base64.b64encode(key.sign(b"good", padding.PKCS1v15(), hashes.SHA256())).decode()
    return {"signature": sig, "events": events}


def _username(sig, token="good"):
    # As the SDK builder does (§2.2): name, URL-quoted signature, token, SDK metrics.
    return (
        f"alice?x-amz-customauthorizer-name=TwinAuth&x-amz-customauthorizer-signature="
        f"{quote(sig, safe='')}&token={token}&SDK=PythonV2&Version=1.31.0"
    )


def _alpn_client(tw, client_id, username, password=b"secret"):
    c = PahoClient(client_id)
    c.client.tls_set_context(client_context(tw.ca, alpn=["mqtt"]))
    c.client.username_pw_set(username, password)
    c.port = tw.port("alpn")
    return c


def test_custom_authorizer_over_alpn_mqtt(tw, authorizer):
    # §1.2, §2.1: port 443 + ALPN "mqtt" + username query + password.
    c = _alpn_client(tw, "dev-ca", _username(authorizer["signature"]))
    c.connect()
    ev = authorizer["events"][-1]
    assert ev["signatureVerified"] is True
    assert ev["protocolData"]["mqtt"]["clientId"] == "dev-ca"
    # Item 9: MQTT over TLS has no HTTP side: no "http" protocol, no http block.
    assert ev["protocols"] == ["tls", "mqtt"]
    assert set(ev["protocolData"]) == {"tls", "mqtt"}
    assert ev["protocolData"]["tls"] == {"serverName": "localhost"}
    # The authorizer's policy documents decide what the connection may do.
    assert c.subscribe("ca/x", "other/x") == [1, 0x87]
    assert c.publish("ca/x", b"hi") == 0
    assert c.get().payload == b"hi"
    assert c.publish("other/x", b"no") == 0x87
    conns = tw.call(tw.twin.connections)
    assert conns[0]["auth"] == "custom-auth"
    assert conns[0]["principal"] == "alice"
    assert conns[0]["listener"] == "alpn-custom-auth"
    c.close()


def test_sdk_custom_authorizer_event(tw, authorizer):
    # Item 9 with the official SDK's custom-authorizer builder (ALPN "mqtt", §2.2): no
    # http block. (The CRT never sends an empty client id: it makes up "gen<uuid>".)
    from awscrt import mqtt5
    from awsiot import mqtt5_client_builder

    done = []
    client = mqtt5_client_builder.direct_with_custom_authorizer(
        endpoint="localhost",
        port=tw.port("alpn"),
        ca_filepath=tw.ca,
        auth_username="alice",
        auth_authorizer_name="TwinAuth",
        auth_authorizer_signature=authorizer["signature"],
        auth_password=b"secret",
        auth_token_key_name="token",
        auth_token_value="good",
        client_id="",
        connect_options=mqtt5.ConnectPacket(client_id=""),
        on_lifecycle_connection_success=lambda d: done.append(d),
        on_lifecycle_connection_failure=lambda d: done.append(d),
    )
    client.start()
    try:
        wait_for(lambda: done)
        ev = authorizer["events"][-1]
        assert ev["protocolData"]["mqtt"]["clientId"].startswith("gen")
        assert ev["protocolData"]["mqtt"]["username"].startswith("alice?x-amz-customauthorizer")
        assert "http" not in ev["protocolData"]
        assert ev["protocols"] == ["tls", "mqtt"]
    finally:
        client.stop()


def test_custom_authorizer_event_has_no_empty_client_id(tw, authorizer):
    # Item 9: a CONNECT without a client id gives an event without clientId (not "").
    from mqtt_v5 import _server_codec as codec
    from twin._server_util import RawClient

    c = RawClient(tw.port("alpn"), client_context(tw.ca, alpn=["mqtt"]))
    ack = c.connect("", username=_username(authorizer["signature"]), password=b"secret")
    assert ack.reason_code == 0
    assert ack.type == codec.CONNACK
    ev = authorizer["events"][-1]
    assert "clientId" not in ev["protocolData"]["mqtt"]
    c.close()


def test_custom_authorizer_refusals(tw, authorizer):
    sig = authorizer["signature"]
    # Wrong password: the Lambda says isAuthenticated false -> 0x87.
    c = _alpn_client(tw, "d1", _username(sig), b"wrong")
    assert c.connect(expect=None) == 0x87
    c.close()
    # A signature that does not verify the token -> 0x87, the Lambda is not called.
    calls = len(authorizer["events"])
    c = _alpn_client(tw, "d2", _username(sig, token="forged"))
    assert c.connect(expect=None) == 0x87
    assert len(authorizer["events"]) == calls
    c.close()
    # Two '?' in the username [JAVA154] -> 0x86 bad user name or password.
    c = _alpn_client(tw, "d3", _username(sig) + "?SDK=Java")
    assert c.connect(expect=None) == 0x86
    c.close()


def test_custom_authorizer_over_websocket_headers(tw, authorizer):
    # §2.1: on WebSocket the credentials may be upgrade-request headers; the CONNECT
    # carries only the password.
    c = PahoClient("ws-dev", transport="websockets")
    c.client.tls_set_context(client_context(tw.ca))
    c.client.ws_set_options(
        path="/mqtt",
        headers={
            "x-amz-customauthorizer-name": "TwinAuth",
            "x-amz-customauthorizer-signature": authorizer["signature"],
            "token": "good",
        },
    )
    c.client.username_pw_set("alice", b"secret")
    c.port = tw.port("wss")
    c.connect()
    # Item 9: the event carries the HTTP side as AWS's does, and the username as the
    # client sent it (the header credentials are not written into it).
    ev = authorizer["events"][-1]
    assert ev["protocols"] == ["tls", "http", "mqtt"]
    assert ev["token"] == "good"
    http = ev["protocolData"]["http"]
    assert http["headers"]["x-amz-customauthorizer-name"] == "TwinAuth"
    assert http["queryString"] == ""
    assert ev["protocolData"]["mqtt"]["username"] == "alice"
    assert c.subscribe("ca/ws") == [1]
    big = bytes(range(256)) * 300  # 76800 bytes: a 64-bit-length WebSocket frame
    assert c.publish("ca/ws", big) == 0
    assert c.get().payload == big
    assert tw.call(tw.twin.connections)[0]["listener"] == "wss"
    c.close()


def test_custom_authorizer_over_websocket_query_and_alpn_http(tw, authorizer):
    # The same over the ALPN port with http/1.1 (how the SDK's websocket builder connects
    # on 443), credentials in the query string.
    c = PahoClient("ws-q", transport="websockets")
    c.client.tls_set_context(client_context(tw.ca, alpn=["http/1.1"]))
    query = (
        f"x-amz-customauthorizer-name=TwinAuth&x-amz-customauthorizer-signature="
        f"{quote(authorizer['signature'], safe='')}&token=good"
    )
    c.client.ws_set_options(path=f"/mqtt?{query}")
    c.client.username_pw_set("alice", b"secret")
    c.port = tw.port("alpn")
    c.connect()
    ev = authorizer["events"][-1]
    assert ev["protocolData"]["http"]["queryString"] == "?" + query
    assert ev["protocolData"]["mqtt"]["username"] == "alice"
    assert c.publish("ca/q", b"x") == 0
    assert tw.call(tw.twin.connections)[0]["listener"] == "alpn-wss"
    c.close()


def test_websocket_wrong_path_or_subprotocol_is_refused(tw):
    import socket
    import ssl

    ctx = client_context(tw.ca)
    for path, proto in (("/other", "mqtt"), ("/mqtt", "chat")):
        s = ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", tw.port("wss"))), server_hostname="localhost"
        )
        s.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {proto}\r\n\r\n"
            ).encode()
        )
        assert s.recv(100).split(b" ")[1] in (b"404", b"400")
        s.close()
    del ssl
    wait_for(lambda: not tw.call(tw.twin.connections))
