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
