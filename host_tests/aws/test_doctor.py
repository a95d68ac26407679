"""The connection doctor against the twin configured to fail each way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqtt_v5.aws.doctor import certificate_validity, diagnose

from .conftest import run

ROOT = Path(__file__).resolve().parents[2]


def doctor(twin, thing, **kw):
    creds = twin.thing(thing)
    kw.setdefault("ca", twin.ca)
    kw.setdefault("port", twin.port("mtls"))
    kw.setdefault("timeout_s", 2.0)
    return run(diagnose("127.0.0.1", thing, str(creds.cert_path), str(creds.key_path),
                        server_hostname="localhost", **kw))


def names(report):
    return [(s.name, s.ok) for s in report.steps]


def test_all_steps_pass(twin):
    r = doctor(twin, "doc-ok")
    assert r.ok, str(r)
    assert names(r) == [("dns", True), ("tcp", True), ("clock", True), ("connect", True),
                        ("subscribe", True), ("publish", True), ("receive", True)]
    assert "all steps passed" in str(r)


def test_wrong_endpoint_does_not_resolve(twin):
    creds = twin.thing("doc-dns")
    # a 64-character label is refused by the resolver library itself: no query leaves
    r = run(diagnose("x" * 64 + ".invalid", "doc-dns", str(creds.cert_path),
                     str(creds.key_path), twin.ca))
    assert names(r) == [("dns", False)]
    assert "describe-endpoint" in r.failed.fix


def test_nothing_listening(twin):
    from conftest import free_port

    r = doctor(twin, "doc-tcp", port=free_port())
    assert r.failed.name == "tcp"
    assert "port" in r.failed.fix


def test_clock_not_set_and_certificate_expired(twin):
    creds = twin.thing("doc-clock")
    nb, na = certificate_validity(str(creds.cert_path))
    assert nb < na
    r = doctor(twin, "doc-clock", now=946684800)        # 2000-01-01: a clock never set
    assert r.failed.name == "clock"
    assert "clock not set" in r.failed.fix
    assert "2000-01-01" in r.failed.detail
    r = doctor(twin, "doc-clock", now=na + 1)
    assert r.failed.name == "clock"
    assert "renew" in r.failed.fix


def test_wrong_ca(twin, pki):
    r = doctor(twin, "doc-ca", ca=str(pki.ca))           # a CA that did not sign the twin
    assert r.failed.name == "connect"
    assert "Amazon Root CA 1" in r.failed.fix


def test_certificate_not_active(twin):
    creds = twin.thing("doc-inactive")
    twin.call(twin.twin.set_certificate_status, creds.certificate_id, "INACTIVE")
    r = doctor(twin, "doc-inactive")
    assert r.failed.name == "connect"
    assert "0x87" in r.failed.detail
    assert "not ACTIVE" in r.failed.fix


def test_policy_lacks_connect_for_the_client_id(twin):
    r = doctor(twin, "doc-cid", client_id="someone-else")
    assert r.failed.name == "connect"
    assert "iot:Connect for client id 'someone-else'" in r.failed.fix


def test_policy_lacks_subscribe_publish_receive(twin):
    r = doctor(twin, "doc-pol", topic="$aws/things/other-thing/shadow/update")
    assert r.failed.name == "subscribe"
    assert "iot:Subscribe" in r.failed.fix
    creds = twin.thing("doc-pub")
    deny = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "iot:Publish",
         "Resource": "arn:aws:iot:*:*:topic/doc/nopub"},
        {"Effect": "Deny", "Action": "iot:Receive",
         "Resource": "arn:aws:iot:*:*:topic/doc/norecv"}]}
    twin.call(twin.twin.add_policy, "doc-deny", deny, creds.certificate_id)
    r = doctor(twin, "doc-pub", topic="doc/nopub")
    assert r.failed.name == "publish"
    assert "iot:Publish" in r.failed.fix
    r = doctor(twin, "doc-pub", topic="doc/norecv")
    assert r.failed.name == "receive"
    assert "iot:Receive" in r.failed.fix


def test_payload_too_large(twin):
    r = doctor(twin, "doc-big", payload_size=131073)
    assert r.failed.name == "publish"
    assert "131072" in r.failed.fix


def test_host_cli(twin):
    creds = twin.thing("doc-cli")
    args = [sys.executable, str(ROOT / "tools" / "aws_doctor.py"), "127.0.0.1", "doc-cli",
            "--cert", str(creds.cert_path), "--key", str(creds.key_path), "--ca", twin.ca,
            "--port", str(twin.port("mtls")), "--server-hostname", "localhost"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    ok = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all steps passed" in ok.stdout
    bad = subprocess.run([*args, "--client-id", "nobody"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 1
    assert "likely fix" in bad.stdout


@pytest.mark.parametrize("when", ["230101000000Z", "20510101000000Z"])
def test_asn1_times(when):
    import calendar
    import time

    from mqtt_v5.aws.doctor import _asn1_time

    tag = 0x17 if len(when) == 13 else 0x18
    full = ("20" + when) if tag == 0x17 else when
    expected = calendar.timegm(time.strptime(full, "%Y%m%d%H%M%SZ"))
    assert _asn1_time(when.encode(), tag, 0, len(when)) == expected


def test_client_certificate_the_endpoint_does_not_know(twin, pki):
    """A certificate from a CA the endpoint does not trust: refused in the TLS handshake."""
    r = run(diagnose("127.0.0.1", "doc-rogue", str(pki.client_cert), str(pki.client_key),
                     twin.ca, port=twin.port("mtls"), server_hostname="localhost",
                     timeout_s=2.0))
    assert r.failed.name == "connect"
    assert "TLS" in r.failed.detail
    assert "client certificate is not registered" in r.failed.fix
