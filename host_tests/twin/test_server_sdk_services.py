"""The official AWS IoT Device SDK v2 for Python (awsiotsdk / awscrt) as an independent client of
the twin, over mutual TLS: its MQTT 5 client, and its V2 request/response service clients
``IotShadowClientV2``, ``IotJobsClientV2`` and ``IotIdentityClientV2`` (aws-iot-spec §6.1),
accepted and rejected paths alike. A rejected request surfaces as ``V2ServiceException`` whose
``modeled_error`` is the service's error document (§3.3, §4.4, §5.2).

Section references are to /work/shared/reference/aws-iot-spec.md.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest

# awsiotsdk is a pinned dev dependency: a missing one fails here, it does not skip.
from awscrt import mqtt5, mqtt_request_response
from awsiot import (
    ServiceStreamOptions,
    V2ServiceException,
    iotidentity,
    iotjobs,
    iotshadow,
    mqtt5_client_builder,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fleet_template import fleet_template

from iot_twin import policy
from iot_twin.registry import ACTIVE
from mqtt_v5 import _server_codec as codec
from twin._server_util import running_twin

TIMEOUT = 5  # seconds; every operation here is answered in milliseconds on loopback


class Sdk:
    """A started SDK MQTT 5 client (mTLS) and what its callbacks saw."""

    def __init__(self, tw, client_id, cert_pem, key_pem):
        self.connected = threading.Event()
        self.failures = []
        self.disconnects = queue.Queue()
        self.received = queue.Queue()
        self.settings = None

        def on_success(data):
            self.settings = data.negotiated_settings
            self.connected.set()

        self.client = mqtt5_client_builder.mtls_from_bytes(
            cert_bytes=cert_pem.encode(),
            pri_key_bytes=key_pem.encode(),
            endpoint="localhost",
            port=tw.port("mtls"),
            ca_filepath=tw.ca,
            client_id=client_id,
            on_publish_received=lambda d: self.received.put(d.publish_packet),
            on_lifecycle_connection_success=on_success,
            on_lifecycle_connection_failure=lambda d: self.failures.append(d),
            on_lifecycle_disconnection=lambda d: self.disconnects.put(d),
        )
        self.client.start()

    def wait_connected(self):
        if not self.connected.wait(TIMEOUT):
            self.client.stop()
            raise AssertionError([(f.exception, f.connack_packet) for f in self.failures])
        return self

    def stop(self):
        self.client.stop()


def _rr_options():
    # The SDK sample's settings (§6.1) with a short timeout.
    return mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4,
        max_streaming_subscriptions=2,
        operation_timeout_in_seconds=TIMEOUT,
    )


def _rejected(future):
    """The modeled error of a request the service rejected."""
    with pytest.raises(V2ServiceException) as e:
        future.result(TIMEOUT)
    assert e.value.modeled_error is not None, (e.value.message, e.value.inner_error)
    return e.value.modeled_error


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, listeners=("mtls",)) as t:
        yield t


@pytest.fixture
def device(tw):
    """The SDK connected as thing ``t1`` with its own certificate (default thing policy)."""
    creds = tw.thing("t1")
    sdk = Sdk(tw, "t1", creds.cert_pem, creds.key_pem).wait_connected()
    try:
        yield sdk
    finally:
        sdk.stop()


# --- Device Shadow (§3) ------------------------------------------------------------------------


def test_shadow_missing_404_version_conflict_update_get_delete(tw, device):
    shadow = iotshadow.IotShadowClientV2(device.client, _rr_options())

    # §3.3: get of a shadow that does not exist -> get/rejected 404 with AWS's message,
    # correlated by the clientToken the SDK put in the request (§6.1).
    req = iotshadow.GetShadowRequest(thing_name="t1")
    err = _rejected(shadow.get_shadow(req))
    assert err.code == 404
    assert err.message == "No shadow exists with name: 't1'"
    assert err.client_token == req.client_token

    # §3.2: update -> update/accepted with only the sections sent, version 1, token echoed.
    req = iotshadow.UpdateShadowRequest(
        thing_name="t1",
        state=iotshadow.ShadowState(desired={"color": "red"}, reported={"color": "green"}),
    )
    accepted = shadow.update_shadow(req).result(TIMEOUT)
    assert accepted.version == 1
    assert accepted.client_token == req.client_token
    assert accepted.state.desired == {"color": "red"}
    assert accepted.state.reported == {"color": "green"}
    assert accepted.metadata.desired["color"]["timestamp"] > 0

    # §3.3: an update naming a version other than the current one -> 409 Version conflict.
    req = iotshadow.UpdateShadowRequest(
        thing_name="t1", state=iotshadow.ShadowState(reported={"color": "blue"}), version=7
    )
    err = _rejected(shadow.update_shadow(req))
    assert (err.code, err.message) == (409, "Version conflict")
    assert err.client_token == req.client_token

    # ... and with the right version it is applied (version 2).
    req = iotshadow.UpdateShadowRequest(
        thing_name="t1", state=iotshadow.ShadowState(reported={"color": "red"}), version=1
    )
    assert shadow.update_shadow(req).result(TIMEOUT).version == 2

    # §3.2 get/accepted: the full document, no delta once reported matches desired.
    req = iotshadow.GetShadowRequest(thing_name="t1")
    got = shadow.get_shadow(req).result(TIMEOUT)
    assert got.version == 2
    assert got.client_token == req.client_token
    assert got.state.desired == {"color": "red"}
    assert got.state.reported == {"color": "red"}
    assert got.state.delta is None
    assert got.timestamp is not None

    # §3.1 delete/accepted {"version", "timestamp", "clientToken"}; then the shadow is gone.
    req = iotshadow.DeleteShadowRequest(thing_name="t1")
    deleted = shadow.delete_shadow(req).result(TIMEOUT)
    assert deleted.version == 2
    assert deleted.client_token == req.client_token
    assert _rejected(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name="t1"))).code == 404
    assert tw.call(tw.twin.get_shadow, "t1") is None


def test_named_shadow_get_update_delete(tw, device):
    # §3.1: $aws/things/<thing>/shadow/name/<shadowName>/...; the 404 message names the shadow.
    shadow = iotshadow.IotShadowClientV2(device.client, _rr_options())
    err = _rejected(
        shadow.get_named_shadow(
            iotshadow.GetNamedShadowRequest(thing_name="t1", shadow_name="cfg")
        )
    )
    assert (err.code, err.message) == (404, "No shadow exists with name: 'cfg'")

    accepted = shadow.update_named_shadow(
        iotshadow.UpdateNamedShadowRequest(
            thing_name="t1", shadow_name="cfg", state=iotshadow.ShadowState(reported={"rate": 5})
        )
    ).result(TIMEOUT)
    assert accepted.version == 1
    got = shadow.get_named_shadow(
        iotshadow.GetNamedShadowRequest(thing_name="t1", shadow_name="cfg")
    ).result(TIMEOUT)
    assert (got.version, got.state.reported) == (1, {"rate": 5})
    # The named shadow is not the classic one.
    assert _rejected(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name="t1"))).code == 404
    assert tw.call(tw.twin.get_shadow, "t1", "cfg")["state"] == {"reported": {"rate": 5}}

    # §3.3: a version conflict on a named shadow too.
    err = _rejected(
        shadow.update_named_shadow(
            iotshadow.UpdateNamedShadowRequest(
                thing_name="t1",
                shadow_name="cfg",
                state=iotshadow.ShadowState(reported={"rate": 6}),
                version=0,
            )
        )
    )
    assert err.code == 409

    req = iotshadow.DeleteNamedShadowRequest(thing_name="t1", shadow_name="cfg")
    deleted = shadow.delete_named_shadow(req).result(TIMEOUT)
    assert (deleted.version, deleted.client_token) == (1, req.client_token)
    err = _rejected(
        shadow.delete_named_shadow(
            iotshadow.DeleteNamedShadowRequest(thing_name="t1", shadow_name="cfg")
        )
    )
    assert err.code == 404


def test_shadow_delta_and_updated_streams_on_an_operator_change(tw, device):
    # §3.2 update/delta and update/documents, caused by UpdateThingShadow (the twin's API).
    shadow = iotshadow.IotShadowClientV2(device.client, _rr_options())
    deltas, documents = queue.Queue(), queue.Queue()
    subscribed = queue.Queue()

    def status(event):
        subscribed.put(event.type)

    streams = [
        shadow.create_shadow_delta_updated_stream(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name="t1"),
            ServiceStreamOptions(deltas.put, subscription_status_listener=status),
        ),
        shadow.create_shadow_updated_stream(
            iotshadow.ShadowUpdatedSubscriptionRequest(thing_name="t1"),
            ServiceStreamOptions(documents.put, subscription_status_listener=status),
        ),
    ]
    for s in streams:
        s.open()
    established = mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED
    assert [subscribed.get(timeout=TIMEOUT) for _ in streams] == [established, established]

    shadow.update_shadow(
        iotshadow.UpdateShadowRequest(
            thing_name="t1", state=iotshadow.ShadowState(reported={"fan": 1})
        )
    ).result(TIMEOUT)
    first = documents.get(timeout=TIMEOUT)
    assert (first.current.version, first.current.state.reported) == (1, {"fan": 1})

    tw.call(tw.twin.update_shadow, "t1", {"state": {"desired": {"fan": 5}}})
    delta = deltas.get(timeout=TIMEOUT)
    assert (delta.version, delta.state) == (2, {"fan": 5})
    assert delta.metadata["fan"]["timestamp"] > 0
    second = documents.get(timeout=TIMEOUT)
    assert second.previous.version == 1
    assert second.current.state.desired == {"fan": 5}
    assert deltas.empty()  # the device's reported-only update made no delta


# --- Jobs (§4) ---------------------------------------------------------------------------------


def test_jobs_pending_start_next_update_describe_and_version_mismatch(tw, device):
    jobs = iotjobs.IotJobsClientV2(device.client, _rr_options())
    tw.call(tw.twin.add_job, "t1", {"operation": "reboot"}, "job-1")
    tw.call(tw.twin.add_job, "t1", {"operation": "upgrade", "version": "2"}, "job-2")

    # §4.2 GetPendingJobExecutions: queued in creation order, clientToken echoed.
    req = iotjobs.GetPendingJobExecutionsRequest(thing_name="t1")
    pending = jobs.get_pending_job_executions(req).result(TIMEOUT)
    assert pending.client_token == req.client_token
    assert [j.job_id for j in pending.queued_jobs] == ["job-1", "job-2"]
    assert pending.in_progress_jobs == []
    assert pending.queued_jobs[0].version_number == 1

    # §4.2 StartNextPendingJobExecution: the oldest QUEUED becomes IN_PROGRESS.
    req = iotjobs.StartNextPendingJobExecutionRequest(
        thing_name="t1", status_details={"step": "download"}
    )
    started = jobs.start_next_pending_job_execution(req).result(TIMEOUT)
    ex = started.execution
    assert (ex.job_id, ex.status, ex.thing_name) == ("job-1", "IN_PROGRESS", "t1")
    assert ex.job_document == {"operation": "reboot"}
    assert ex.status_details == {"step": "download"}
    assert ex.version_number == 2
    assert started.client_token == req.client_token
    # §4.2: device-plane timestamps are epoch seconds (the SDK reads them as such).
    assert abs(started.timestamp.timestamp() - time.time()) < 60
    assert abs(ex.started_at.timestamp() - time.time()) < 60

    # §4.3/§4.4: a wrong expectedVersion -> VersionMismatch with the current executionState.
    req = iotjobs.UpdateJobExecutionRequest(
        thing_name="t1", job_id="job-1", status="SUCCEEDED", expected_version=1
    )
    err = _rejected(jobs.update_job_execution(req))
    assert err.code == "VersionMismatch"
    assert err.client_token == req.client_token
    assert err.execution_state.status == "IN_PROGRESS"
    assert err.execution_state.version_number == 2

    # With the right version: SUCCEEDED, executionState and jobDocument as requested.
    req = iotjobs.UpdateJobExecutionRequest(
        thing_name="t1",
        job_id="job-1",
        status="SUCCEEDED",
        expected_version=2,
        status_details={"result": "ok"},
        include_job_execution_state=True,
        include_job_document=True,
    )
    updated = jobs.update_job_execution(req).result(TIMEOUT)
    assert updated.client_token == req.client_token
    assert updated.execution_state.status == "SUCCEEDED"
    assert updated.execution_state.status_details == {"result": "ok"}
    assert updated.execution_state.version_number == 3
    assert updated.job_document == {"operation": "reboot"}

    # §4.3: SUCCEEDED is terminal.
    err = _rejected(
        jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name="t1", job_id="job-1", status="IN_PROGRESS"
            )
        )
    )
    assert err.code == "InvalidStateTransition"
    assert err.execution_state.status == "SUCCEEDED"

    # §4.2 DescribeJobExecution, by id and as $next; §4.4 TerminalStateReached / not found.
    req = iotjobs.DescribeJobExecutionRequest(thing_name="t1", job_id="job-2")
    described = jobs.describe_job_execution(req).result(TIMEOUT)
    assert described.client_token == req.client_token
    assert (described.execution.job_id, described.execution.status) == ("job-2", "QUEUED")
    assert described.execution.job_document == {"operation": "upgrade", "version": "2"}
    nxt = jobs.describe_job_execution(
        iotjobs.DescribeJobExecutionRequest(
            thing_name="t1", job_id="$next", include_job_document=False
        )
    ).result(TIMEOUT)
    assert nxt.execution.job_id == "job-2"
    assert nxt.execution.job_document is None
    err = _rejected(
        jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name="t1", job_id="job-1")
        )
    )
    assert err.code == "TerminalStateReached"
    err = _rejected(
        jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name="t1", job_id="nope")
        )
    )
    assert err.code == "ResourceNotFound"

    pending = jobs.get_pending_job_executions(
        iotjobs.GetPendingJobExecutionsRequest(thing_name="t1")
    ).result(TIMEOUT)
    assert [j.job_id for j in pending.queued_jobs] == ["job-2"]


def test_jobs_notify_next_and_notify_streams_when_the_twin_queues_a_job(tw, device):
    # §4.2 notifications: notify-next when the head of the queue changes; notify lists the
    # pending executions whenever one is queued, starts, or ends (item 3).
    jobs = iotjobs.IotJobsClientV2(device.client, _rr_options())
    nexts, changes, subscribed = queue.Queue(), queue.Queue(), queue.Queue()

    def status(event):
        subscribed.put(event.type)

    streams = [
        jobs.create_next_job_execution_changed_stream(
            iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name="t1"),
            ServiceStreamOptions(nexts.put, subscription_status_listener=status),
        ),
        jobs.create_job_executions_changed_stream(
            iotjobs.JobExecutionsChangedSubscriptionRequest(thing_name="t1"),
            ServiceStreamOptions(changes.put, subscription_status_listener=status),
        ),
    ]
    for s in streams:
        s.open()
    established = mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED
    assert [subscribed.get(timeout=TIMEOUT) for _ in streams] == [established, established]

    tw.call(tw.twin.add_job, "t1", {"operation": "blink"}, "job-a")
    event = nexts.get(timeout=TIMEOUT)
    assert event.execution.job_id == "job-a"
    assert event.execution.status == "QUEUED"
    assert event.execution.job_document == {"operation": "blink"}
    listed = changes.get(timeout=TIMEOUT)
    assert [j.job_id for j in listed.jobs["QUEUED"]] == ["job-a"]

    # A second job does not change the head: notify, but no notify-next.
    tw.call(tw.twin.add_job, "t1", {"operation": "sleep"}, "job-b")
    listed = changes.get(timeout=TIMEOUT)
    assert [j.job_id for j in listed.jobs["QUEUED"]] == ["job-a", "job-b"]
    assert nexts.empty()

    # [JOBS-NOTIFY] (current): an execution changing to IN_PROGRESS publishes notify (the
    # head is still job-a: no notify-next).
    started = jobs.start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(thing_name="t1")
    ).result(TIMEOUT)
    assert started.execution.job_id == "job-a"
    listed = changes.get(timeout=TIMEOUT)
    assert [j.job_id for j in listed.jobs["IN_PROGRESS"]] == ["job-a"]
    assert [j.job_id for j in listed.jobs["QUEUED"]] == ["job-b"]

    # The head goes terminal: notify lists what is left, notify-next names the new head.
    jobs.update_job_execution(
        iotjobs.UpdateJobExecutionRequest(thing_name="t1", job_id="job-a", status="FAILED")
    ).result(TIMEOUT)
    assert nexts.get(timeout=TIMEOUT).execution.job_id == "job-b"
    listed = changes.get(timeout=TIMEOUT)
    assert "IN_PROGRESS" not in listed.jobs
    assert [j.job_id for j in listed.jobs["QUEUED"]] == ["job-b"]


# --- Fleet provisioning (§5) -------------------------------------------------------------------

TEMPLATE = fleet_template("sensor_", "SensorPolicy",
                          {"telemetry": {"Fn::Sub": "sensors/${SerialNumber}/data"}},
                          thing={"AttributePayload": {"serial": {"Ref": "SerialNumber"}}})


@pytest.fixture
def claim(tw):
    """§5.3: a claim certificate (ACTIVE, attached to no thing) whose only policy is the claim
    policy for template ``fleet``; template ``fleet`` and the policy it attaches registered."""

    def setup():
        t = tw.twin
        cert_pem, key_pem = t.services.ca.issue_device_cert("claim")
        cert = t.registry.add_certificate(cert_pem, ACTIVE)
        t.add_policy("ClaimPolicy", policy.claim_policy("fleet"), cert.certificate_id)
        t.add_policy("SensorPolicy", policy.default_thing_policy())
        t.add_template("fleet", TEMPLATE)
        return cert_pem, key_pem

    cert_pem, key_pem = tw.call(setup)
    sdk = Sdk(tw, "claim-client-1", cert_pem, key_pem).wait_connected()
    try:
        yield sdk
    finally:
        sdk.stop()


def _new_device_connects(tw, thing, cert_pem, key_pem):
    """§5.3 step 4: a NEW SDK connection with the issued certificate, as the new thing."""
    dev = Sdk(tw, thing, cert_pem, key_pem).wait_connected()
    try:
        conn = next(c for c in tw.call(tw.twin.connections) if c["client_id"] == thing)
        assert conn["thing"] == thing
        # The template's policy lets the new thing use its own shadow.
        shadow = iotshadow.IotShadowClientV2(dev.client, _rr_options())
        assert (
            shadow.update_shadow(
                iotshadow.UpdateShadowRequest(
                    thing_name=thing, state=iotshadow.ShadowState(reported={"up": True})
                )
            )
            .result(TIMEOUT)
            .version
            == 1
        )
    finally:
        dev.stop()


def test_provisioning_create_keys_and_certificate_then_register_thing(tw, claim):
    identity = iotidentity.IotIdentityClientV2(claim.client, _rr_options())
    keys = identity.create_keys_and_certificate(
        iotidentity.CreateKeysAndCertificateRequest()
    ).result(TIMEOUT)
    assert keys.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in keys.private_key
    cert = tw.call(tw.twin.registry.certificates.get, keys.certificate_id)
    assert cert.status == "PENDING_ACTIVATION"  # §5.3 step 2

    registered = identity.register_thing(
        iotidentity.RegisterThingRequest(
            template_name="fleet",
            certificate_ownership_token=keys.certificate_ownership_token,
            parameters={"SerialNumber": "0042"},
        )
    ).result(TIMEOUT)
    assert registered.thing_name == "sensor_0042"
    assert registered.device_configuration == {"telemetry": "sensors/0042/data"}
    assert cert.status == ACTIVE
    assert cert.things == ["sensor_0042"]
    assert tw.twin.registry.things["sensor_0042"].attributes == {"serial": "0042"}

    # The token is single use (§5.3): a second RegisterThing with it is rejected.
    err = _rejected(
        identity.register_thing(
            iotidentity.RegisterThingRequest(
                template_name="fleet",
                certificate_ownership_token=keys.certificate_ownership_token,
                parameters={"SerialNumber": "0042"},
            )
        )
    )
    assert (err.status_code, err.error_code) == (400, "InvalidCertificateOwnershipToken")

    _new_device_connects(tw, "sensor_0042", keys.certificate_pem, keys.private_key)


def test_provisioning_create_certificate_from_csr_then_register_thing(tw, claim):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-csr")]))
        .sign(key, hashes.SHA256())
    )
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    identity = iotidentity.IotIdentityClientV2(claim.client, _rr_options())
    issued = identity.create_certificate_from_csr(
        iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr_pem)
    ).result(TIMEOUT)
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert tw.call(tw.twin.registry.certificates.get, issued.certificate_id).status == (
        "PENDING_ACTIVATION"
    )

    registered = identity.register_thing(
        iotidentity.RegisterThingRequest(
            template_name="fleet",
            certificate_ownership_token=issued.certificate_ownership_token,
            parameters={"SerialNumber": "0077"},
        )
    ).result(TIMEOUT)
    assert registered.thing_name == "sensor_0077"

    # A CSR that is not one -> rejected (code UNVERIFIED, §5.2 shape).
    err = _rejected(
        identity.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request="garbage")
        )
    )
    assert err.status_code == 400
    assert err.error_code
    assert err.error_message

    _new_device_connects(tw, "sensor_0077", issued.certificate_pem, key_pem)


def test_provisioning_register_thing_rejected_for_unknown_and_expired_tokens(tw, claim):
    identity = iotidentity.IotIdentityClientV2(claim.client, _rr_options())

    def register(token):
        return identity.register_thing(
            iotidentity.RegisterThingRequest(
                template_name="fleet",
                certificate_ownership_token=token,
                parameters={"SerialNumber": "1"},
            )
        )

    # §5.2: the observed error shape and code for a bad ownership token [JS69].
    err = _rejected(register("not-a-token"))
    assert (err.status_code, err.error_code) == (400, "InvalidCertificateOwnershipToken")
    assert err.error_message

    # §5.3: the token expires after an hour; its unused certificate goes with it.
    keys = identity.create_keys_and_certificate(
        iotidentity.CreateKeysAndCertificateRequest()
    ).result(TIMEOUT)

    def expire():
        tw.twin.registry.tokens[keys.certificate_ownership_token].expires_at = int(time.time()) - 1

    tw.call(expire)
    err = _rejected(register(keys.certificate_ownership_token))
    assert (err.status_code, err.error_code) == (400, "InvalidCertificateOwnershipToken")
    assert tw.call(tw.twin.registry.certificates.get, keys.certificate_id) is None
    assert "sensor_1" not in tw.twin.registry.things

    # §5.3: the claim policy covers template "fleet" only, so the twin refuses the SDK's
    # subscriptions for another template (SUBACK 0x87) and for a thing's shadow: the request
    # fails at its subscribe, without a service answer.
    shadow = iotshadow.IotShadowClientV2(claim.client, _rr_options())
    for future in (
        identity.register_thing(
            iotidentity.RegisterThingRequest(
                template_name="other", certificate_ownership_token="x", parameters={}
            )
        ),
        shadow.get_shadow(iotshadow.GetShadowRequest(thing_name="sensor_1")),
    ):
        with pytest.raises(V2ServiceException) as e:
            future.result(TIMEOUT)
        assert e.value.modeled_error is None
        assert e.value.inner_error.name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE"


# --- the SDK's MQTT 5 client (§1.6, §1.9, §1.10) ---------------------------------------------


def test_mqtt5_qos1_round_trip_and_qos2_refused(tw, device):
    # §1.6 CONNACK Maximum QoS 1, as AWS sends it.
    assert device.settings.maximum_qos == mqtt5.QoS.AT_LEAST_ONCE

    sub = device.client.subscribe(
        mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription("sdk/echo", mqtt5.QoS.AT_LEAST_ONCE)]
        )
    ).result(TIMEOUT)
    assert sub.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]  # §1.8 SUBACK

    done = device.client.publish(
        mqtt5.PublishPacket(
            topic="sdk/echo",
            payload=b"hello",
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            user_properties=[mqtt5.UserProperty("k", "v")],
        )
    ).result(TIMEOUT)
    assert done.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
    msg = device.received.get(timeout=TIMEOUT)
    assert (msg.topic, msg.payload, msg.qos) == ("sdk/echo", b"hello", mqtt5.QoS.AT_LEAST_ONCE)
    assert [(p.name, p.value) for p in msg.user_properties] == [("k", "v")]  # §1.6 order kept

    # QoS 2 is not supported by AWS (§1.6) nor by the SDK (§6.2): the SDK refuses a QoS 2
    # publish (and subscribe) itself, before anything reaches the twin ...
    with pytest.raises(Exception, match="PUBLISH_OPTIONS_VALIDATION"):
        device.client.publish(
            mqtt5.PublishPacket(topic="sdk/echo", payload=b"x", qos=mqtt5.QoS.EXACTLY_ONCE)
        ).result(TIMEOUT)
    with pytest.raises(Exception, match="SUBSCRIBE_OPTIONS_VALIDATION"):
        device.client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[mqtt5.Subscription("sdk/two", mqtt5.QoS.EXACTLY_ONCE)]
            )
        ).result(TIMEOUT)
    with pytest.raises(queue.Empty):
        device.received.get(timeout=0.2)
    assert device.disconnects.empty()
    # ... and stays connected.
    device.client.publish(
        mqtt5.PublishPacket(topic="sdk/echo", payload=b"again", qos=mqtt5.QoS.AT_LEAST_ONCE)
    ).result(TIMEOUT)
    assert device.received.get(timeout=TIMEOUT).payload == b"again"

    # What the SDK spares itself: on the same mTLS listener a client that does send a QoS 2
    # PUBLISH is disconnected with 0x9B QoS not supported (§1.9).
    raw = tw.raw("mtls", thing="t2")
    try:
        assert raw.connect("t2").reason_code == 0
        raw.send(codec.Publish("sdk/echo", b"q2", qos=2, packet_id=1))
        assert raw.recv_type(codec.DISCONNECT).reason_code == 0x9B
    finally:
        raw.close()
    with pytest.raises(queue.Empty):
        device.received.get(timeout=0.2)


def test_mqtt5_publish_denied_by_policy_gets_puback_0x87(tw, device):
    # §1.8/§1.9: PUBACK 0x87 and DISCONNECT 0x87 are both documented for a policy-denied
    # publish (which one AWS uses is UNVERIFIED); the twin answers PUBACK 0x87 and the SDK
    # surfaces it. The default thing policy does not cover another thing's shadow.
    done = device.client.publish(
        mqtt5.PublishPacket(
            topic="$aws/things/other/shadow/update", payload=b"{}", qos=mqtt5.QoS.AT_LEAST_ONCE
        )
    ).result(TIMEOUT)
    assert done.puback.reason_code == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    assert device.disconnects.empty()
