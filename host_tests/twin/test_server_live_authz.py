"""Authorisation that AWS re-evaluates on a live connection, with the official AWS SDK as
the device: ``iot:ConnectAttributes`` in connect policies, certificate revocation and
deactivation, policies attached or detached while connected, and queued messages checked
against ``iot:Receive`` like live ones (issue 11, items 1, 2 and 8)."""

from __future__ import annotations

import pytest
from awscrt import mqtt5

from iot_twin.provisioning import DEFAULT_POLICY_NAME
from twin._server_util import SdkClient, running_twin, wait_for

ARN = "arn:aws:iot:us-east-1:123456789012"


def _statement(effect, action, resource, condition=None):
    stmt = {"Effect": effect, "Action": action, "Resource": resource}
    if condition:
        stmt["Condition"] = condition
    return stmt


def _only_policy(tw, thing, *statements):
    """Replace thing's default policy with one made of ``statements``."""
    cert_id = tw.thing(thing).certificate_id
    doc = {"Version": "2012-10-17", "Statement": list(statements)}
    tw.call(tw.twin.add_policy, f"{thing}-policy", doc, cert_id)
    tw.call(tw.twin.detach_policy, DEFAULT_POLICY_NAME, cert_id)
    return cert_id


ALLOW_ALL_IO = _statement(
    "Allow",
    ["iot:Publish", "iot:Subscribe", "iot:Receive"],
    [f"{ARN}:topic/*", f"{ARN}:topicfilter/*"],
)


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, listeners=("mtls",)) as t:
        yield t


def _connect(tw, cid, **kwargs):
    c = SdkClient(tw, cid, **kwargs)
    return c


def test_deny_on_persistent_connect_refuses_a_persistent_session(tw):
    # [connect-policy] "connectAttributes allow you to specify what attributes you want to
    # use in your connect message in your IAM policies such as PersistentConnect and
    # LastWill"; a Deny on PersistentConnect refuses a Clean Start 0 CONNECT.
    _only_policy(
        tw,
        "t1",
        _statement("Allow", "iot:Connect", f"{ARN}:client/t1"),
        _statement(
            "Deny",
            "iot:Connect",
            f"{ARN}:client/t1",
            {"ForAnyValue:StringEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}},
        ),
    )
    persistent = _connect(
        tw,
        "t1",
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
        connect_options=mqtt5.ConnectPacket(session_expiry_interval_sec=600),
    )
    try:
        assert persistent.connack_refusal() == 0x87
    finally:
        persistent.stop()
    clean = _connect(tw, "t1", session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN)
    try:
        clean.wait_connected()
    finally:
        clean.stop()


def test_allow_only_persistent_connect_refuses_a_will(tw):
    # The connect-policy page's example: Allow iot:Connect with ForAllValues:StringEquals
    # iot:ConnectAttributes [PersistentConnect]: a persistent CONNECT and a plain one pass,
    # one with a will (LastWill) does not.
    _only_policy(
        tw,
        "t1",
        _statement(
            "Allow",
            "iot:Connect",
            f"{ARN}:client/t1",
            {"ForAllValues:StringEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}},
        ),
    )
    will = mqtt5.PublishPacket(topic="t1/gone", payload=b"bye", qos=mqtt5.QoS.AT_LEAST_ONCE)
    with_will = _connect(tw, "t1", connect_options=mqtt5.ConnectPacket(will=will))
    try:
        assert with_will.connack_refusal() == 0x87
    finally:
        with_will.stop()
    persistent = _connect(
        tw,
        "t1",
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
        connect_options=mqtt5.ConnectPacket(session_expiry_interval_sec=600),
    )
    try:
        persistent.wait_connected()
    finally:
        persistent.stop()
    wait_for(lambda: not tw.call(tw.twin.connections))


def _device_policy(tw, thing="t1"):
    """t1 may connect, publish and subscribe under t1/, receive t1/ok/*; policy
    ``t1-secret`` (attached) lets it receive and publish t1/secret/* too."""
    cert_id = _only_policy(
        tw,
        thing,
        _statement("Allow", "iot:Connect", f"{ARN}:client/{thing}"),
        _statement("Allow", "iot:Subscribe", f"{ARN}:topicfilter/{thing}/*"),
        _statement("Allow", ["iot:Publish", "iot:Receive"], f"{ARN}:topic/{thing}/ok/*"),
    )
    secret = {
        "Version": "2012-10-17",
        "Statement": [
            _statement("Allow", ["iot:Publish", "iot:Receive"], f"{ARN}:topic/{thing}/secret/*")
        ],
    }
    tw.call(tw.twin.add_policy, f"{thing}-secret", secret, cert_id)
    return cert_id


@pytest.mark.parametrize("status", ["REVOKED", "INACTIVE"])
def test_revoking_a_certificate_closes_its_live_connections(tw, status):
    # Item 1: AWS closes the connections of a revoked or deactivated certificate (within
    # minutes); the twin does it at once by default. Reconnecting is refused.
    cert_id = tw.thing("t1").certificate_id
    other = SdkClient(tw, "t2")
    device = SdkClient(tw, "t1")
    device.wait_connected()
    other.wait_connected()
    tw.call(tw.twin.set_certificate_status, cert_id, status)
    try:
        assert device.disconnect_reason() == 0x98
        assert device.connack_refusal() == 0x87  # the SDK reconnects: refused now
        assert [c["client_id"] for c in tw.call(tw.twin.connections)] == ["t2"]
    finally:
        device.stop()
        other.stop()


def test_revocation_delay(tmp_path):
    with running_twin(tmp_path, listeners=("mtls",), revocation_delay_s=2.0) as tw:
        device = SdkClient(tw, "t1")
        device.wait_connected()
        try:
            tw.call(tw.twin.set_certificate_status, tw.thing("t1").certificate_id, "REVOKED")
            time_left = device.stopped.empty()
            assert time_left  # not at once
            assert device.publish("t1/x", b"still here") == 0
            assert device.disconnect_reason(timeout=5) == 0x98
        finally:
            device.stop()


def test_attaching_and_detaching_policies_apply_to_the_live_connection(tw):
    # Item 1: AttachPolicy / DetachPolicy apply to a live connection's next action, not
    # only to its next CONNECT.
    cert_id = _device_policy(tw)
    device = SdkClient(tw, "t1")
    device.wait_connected()
    try:
        assert device.subscribe("t1/secret/+") == [1]
        assert device.publish("t1/secret/a", b"1") == 0
        assert device.get().payload == b"1"
        tw.call(tw.twin.detach_policy, "t1-secret", cert_id)
        assert device.publish("t1/secret/a", b"2") == 0x87  # Publish denied now
        tw.call(tw.twin.publish, "t1/secret/a", b"3")
        device.nothing()  # Receive denied now
        tw.call(tw.twin.attach_policy, "t1-secret", cert_id)
        assert device.publish("t1/secret/a", b"4") == 0
        assert device.get().payload == b"4"
    finally:
        device.stop()


def _persistent(tw, cid="t1"):
    return SdkClient(
        tw,
        cid,
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
        connect_options=mqtt5.ConnectPacket(session_expiry_interval_sec=3600),
    )


def test_queued_messages_pass_the_receive_check_when_the_session_resumes(tw):
    # Item 8: messages queued for an offline persistent session are judged by iot:Receive
    # when a new connection takes the session over, as live ones are.
    cert_id = _device_policy(tw)
    device = _persistent(tw)
    device.wait_connected()
    assert device.subscribe("t1/+/+") == [1]
    device.stop()
    wait_for(lambda: not tw.call(tw.twin.connections))
    assert tw.call(tw.twin.publish, "t1/secret/a", b"queued secret") == 1
    assert tw.call(tw.twin.publish, "t1/ok/a", b"queued ok") == 1
    tw.call(tw.twin.detach_policy, "t1-secret", cert_id)
    device = _persistent(tw)
    try:
        device.wait_connected()
        assert device.get().payload == b"queued ok"
        device.nothing()
    finally:
        device.stop()


def test_unacknowledged_messages_pass_the_receive_check_when_resent(tw):
    # Item 8, the in-flight half: QoS 1 messages sent but never acknowledged are sent again
    # when the session resumes (§1.10), and each passes iot:Receive again first: the one
    # the policy now denies is not re-sent, the allowed one is (same packet identifier).
    from mqtt_v5 import _server_codec as codec
    from mqtt_v5 import properties as P

    cert_id = _device_policy(tw)
    sei = {P.PROP_SESSION_EXPIRY_INTERVAL: 300}
    raw = tw.raw("mtls", thing="t1")
    assert raw.connect("t1", clean_start=False, properties=sei).reason_code == 0
    raw.send(codec.Subscribe(1, [("t1/+/+", 1)]))
    assert raw.recv_type(codec.SUBACK).reason_codes == [1]
    assert tw.call(tw.twin.publish, "t1/secret/a", b"secret") == 1
    assert tw.call(tw.twin.publish, "t1/ok/a", b"ok") == 1
    sent = [raw.recv_type(codec.PUBLISH) for _ in range(2)]
    assert [p.payload for p in sent] == [b"secret", b"ok"]
    raw.close()  # no PUBACK: both stay in flight
    wait_for(lambda: not tw.call(tw.twin.connections))
    tw.call(tw.twin.detach_policy, "t1-secret", cert_id)
    raw = tw.raw("mtls", thing="t1")
    try:
        assert raw.connect("t1", clean_start=False, properties=sei).session_present
        raw.send(b"\xc0\x00")  # PINGREQ: what is re-sent comes before its PINGRESP
        resent = []
        while (p := raw.recv()).type != codec.PINGRESP:
            if p.type == codec.PUBLISH:
                resent.append((p.payload, p.packet_id))
        assert resent == [(b"ok", sent[1].packet_id)]
    finally:
        raw.close()


def test_messages_of_a_session_restored_from_disk_pass_the_receive_check(tmp_path):
    from twin._server_util import TwinThread

    data = tmp_path / "twin-data"
    tw = TwinThread(data, listeners=("mtls",))
    try:
        cert_id = _device_policy(tw)
        things = tw._things
        device = _persistent(tw)
        device.wait_connected()
        assert device.subscribe("t1/+/+") == [1]
        device.stop()
        wait_for(lambda: not tw.call(tw.twin.connections))
        tw.call(tw.twin.detach_policy, "t1-secret", cert_id)
    finally:
        tw.stop()
    tw = TwinThread(data, listeners=("mtls",))  # the session comes back from sessions.json
    tw._things = things
    try:
        assert tw.call(tw.twin.publish, "t1/secret/a", b"queued secret") == 1
        assert tw.call(tw.twin.publish, "t1/ok/a", b"queued ok") == 1
        device = _persistent(tw)
        device.wait_connected()
        assert device.get().payload == b"queued ok"
        device.nothing()
        device.stop()
    finally:
        tw.stop()


def test_messages_queued_before_a_restart_pass_the_receive_check_after_it(tmp_path):
    # Item 8: QoS 1 messages queued for an offline persistent session are written to disk
    # when the twin stops; the policy then loses iot:Receive on one topic; after the
    # restart the session resumes from sessions.json and each restored message passes
    # iot:Receive on delivery (as AWS judges queued messages when they are delivered),
    # so the denied one is dropped and the allowed one arrives.
    import json

    from twin._server_util import TwinThread

    data = tmp_path / "twin-data"
    tw = TwinThread(data, listeners=("mtls",))
    try:
        cert_id = _device_policy(tw)
        things = tw._things
        device = _persistent(tw)
        device.wait_connected()
        assert device.subscribe("t1/+/+") == [1]
        device.stop()
        wait_for(lambda: not tw.call(tw.twin.connections))
        # Both pass iot:Receive now, so both are queued (the denied one first: were it
        # delivered, it would be the first message the device gets).
        assert tw.call(tw.twin.publish, "t1/secret/a", b"queued secret") == 1
        assert tw.call(tw.twin.publish, "t1/ok/a", b"queued ok") == 1
        tw.call(tw.twin.detach_policy, "t1-secret", cert_id)
    finally:
        tw.stop()
    saved = json.loads((data / "sessions.json").read_text())
    (session,) = (s for s in saved["sessions"] if s["client_id"] == "t1")
    assert [q["topic"] for q in session["queued"]] == ["t1/secret/a", "t1/ok/a"]
    tw = TwinThread(data, listeners=("mtls",))  # the queue comes back from sessions.json
    tw._things = things
    try:
        device = _persistent(tw)
        device.wait_connected()
        assert device.get().payload == b"queued ok"
        device.nothing()
        device.stop()
    finally:
        tw.stop()


def test_job_events_reach_a_subscribed_monitor(tmp_path):
    # Item 3 (jobs events, opt-in as on AWS): the SDK device finishes a job; a monitor
    # subscribed to $aws/events/... hears the execution's end and the job's completion.
    import json

    with running_twin(tmp_path, listeners=("mtls",), job_events=True) as tw:
        monitor_cert = tw.thing("monitor").certificate_id
        doc = {
            "Version": "2012-10-17",
            "Statement": [
                _statement("Allow", "iot:Subscribe", f"{ARN}:topicfilter/$aws/events/*"),
                _statement("Allow", "iot:Receive", f"{ARN}:topic/$aws/events/*"),
            ],
        }
        tw.call(tw.twin.add_policy, "monitor-events", doc, monitor_cert)
        monitor = SdkClient(tw, "monitor")
        device = SdkClient(tw, "t1")
        monitor.wait_connected()
        device.wait_connected()
        try:
            assert monitor.subscribe("$aws/events/jobExecution/+/+", "$aws/events/job/+/+") == [
                1,
                1,
            ]
            job_id = tw.call(tw.twin.add_job, "t1", {"operation": "blink"}, "job-e")
            assert (
                device.publish(f"$aws/things/t1/jobs/{job_id}/update", '{"status": "SUCCEEDED"}')
                == 0
            )
            first, second = monitor.get(), monitor.get()
            assert first.topic == "$aws/events/jobExecution/job-e/succeeded"
            assert json.loads(first.payload)["status"] == "SUCCEEDED"
            assert second.topic == "$aws/events/job/job-e/completed"
        finally:
            device.stop()
            monitor.stop()
