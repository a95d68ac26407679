"""Fleet provisioning through mqtt_v5.aws.provisioning against the AWS IoT twin: the
first-boot flow end to end (claim certificate -> new identity on flash -> reconnect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fleet_template import fleet_template
from hypothesis import given
from hypothesis import strategies as st

from iot_twin import cbor as twin_cbor
from iot_twin.policy import default_thing_policy
from mqtt_v5.aws import AwsRejected, cbor
from mqtt_v5.aws.provisioning import (
    Provisioner,
    first_boot,
    is_provisioned,
    save_identity,
    write_atomic,
)
from mqtt_v5.aws.shadow import Shadow

from .conftest import device, run

TEMPLATE = fleet_template("sensor-", default_thing_policy(), {"interval": "60"})


@pytest.fixture
def fleet(twin):
    twin.call(twin.twin.add_template, "fleet", TEMPLATE)
    return twin


def claim_args(twin, tmp_path):
    claim = twin.thing("fleet-claim")  # its policy allows the provisioning topics
    return {"endpoint": "127.0.0.1", "claim_cert": str(claim.cert_path),
                "claim_key": str(claim.key_path), "ca": twin.ca, "template": "fleet",
                "cert_path": str(tmp_path / "device.crt"),
                "key_path": str(tmp_path / "device.key"),
                "claim_client_id": "fleet-claim", "port": twin.port("mtls"),
                "server_hostname": "localhost"}


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_first_boot_end_to_end_then_boots_with_the_stored_identity(fleet, tmp_path, der):
    args = claim_args(fleet, tmp_path)

    async def main():
        client, thing = await first_boot(parameters={"SerialNumber": "0042"}, der=der, **args)
        assert thing == "sensor-0042"
        assert client.is_connected
        assert client.options.client_id == "sensor-0042"
        shadow = Shadow(client)               # the new identity's policy works
        await shadow.update(reported={"booted": 1})
        await client.disconnect()
        # next boot: nothing is provisioned again
        before = len(fleet.call(fleet.twin.things))
        client, thing = await first_boot(parameters={"SerialNumber": "0042"}, **args)
        assert thing == "sensor-0042"
        assert len(fleet.call(fleet.twin.things)) == before
        await client.disconnect()

    run(main())
    cert = open(args["cert_path"], "rb").read()
    if der:
        assert cert[0] == 0x30
        assert open(args["key_path"], "rb").read()[0] == 0x30
    else:
        assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert not os.path.exists(args["cert_path"] + ".tmp")
    assert is_provisioned(args["cert_path"], args["key_path"])
    assert fleet.call(fleet.twin.get_shadow, "sensor-0042")["state"]["reported"] == {"booted": 1}


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_certificate_from_csr_keeps_the_device_key(fleet, tmp_path, fmt):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))
           .sign(key, hashes.SHA256()))
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())

    async def main():
        claim = device(fleet, "fleet-claim", maximum_packet_size=8192)
        await claim.connect()
        p = Provisioner(claim, "fleet", fmt=fmt)
        created = await p.create_certificate_from_csr(csr_pem)
        assert "privateKey" not in created
        registered = await p.register_thing(created["certificateOwnershipToken"],
                                            {"SerialNumber": "csr-" + fmt})
        assert registered["thingName"] == "sensor-csr-" + fmt
        assert registered["deviceConfiguration"] == {"interval": "60"}
        await claim.disconnect()
        save_identity(created["certificatePem"], key_pem, str(tmp_path / "c.pem"),
                      str(tmp_path / "k.pem"))
        cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()

    run(main())


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_create_keys_and_certificate_then_register(fleet, tmp_path, fmt):
    """CreateKeysAndCertificate and RegisterThing over each format's own topics: the key
    AWS made matches the certificate, and the stored identity connects as the thing."""
    async def main():
        claim = device(fleet, "fleet-claim", maximum_packet_size=8192)
        await claim.connect()
        p = Provisioner(claim, "fleet", fmt=fmt)
        created = await p.create_keys_and_certificate()
        registered = await p.register_thing(created["certificateOwnershipToken"],
                                            {"SerialNumber": "keys-" + fmt})
        subs = next(c["subscriptions"] for c in fleet.call(fleet.twin.broker.connection_list)
                    if c["client_id"] == "fleet-claim")
        await claim.disconnect()
        assert f"$aws/certificates/create/{fmt}/accepted" in subs
        assert f"$aws/provisioning-templates/fleet/provision/{fmt}/accepted" in subs
        assert registered["thingName"] == "sensor-keys-" + fmt
        cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
        key = serialization.load_pem_private_key(created["privateKey"].encode(), None)
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
        save_identity(created["certificatePem"], created["privateKey"],
                      str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
        from mqtt_v5.aws.connect import aws_client

        dev = aws_client("127.0.0.1", registered["thingName"], cert=str(tmp_path / "c.pem"),
                         key=str(tmp_path / "k.pem"), ca=fleet.ca, port=fleet.port("mtls"),
                         server_hostname="localhost")
        await dev.connect()
        assert (await Shadow(dev).update(reported={"fmt": fmt}))["version"] == 1
        await dev.disconnect()

    run(main())


def test_rejections_bad_and_expired_ownership_token(fleet, tmp_path):
    async def main():
        claim = device(fleet, "fleet-claim", maximum_packet_size=8192)
        await claim.connect()
        p = Provisioner(claim, "fleet")
        with pytest.raises(AwsRejected) as e:
            await p.register_thing("", {"SerialNumber": "1"})
        assert e.value.code == "InvalidCertificateOwnershipToken"
        assert e.value.status == 400
        fleet.twin.services.provisioning.token_ttl_s = -1   # tokens expire at once
        created = await p.create_keys_and_certificate()
        with pytest.raises(AwsRejected) as e:
            await p.register_thing(created["certificateOwnershipToken"], {"SerialNumber": "2"})
        assert e.value.code == "InvalidCertificateOwnershipToken"
        assert "expired" in e.value.message
        with pytest.raises(AwsRejected):
            await Provisioner(claim, "no-such-template").register_thing("x", {})
        await claim.disconnect()

    run(main())


def test_one_request_per_operation_in_flight(fleet):
    """The API has no clientToken, so two concurrent requests of one operation must not
    overlap. The twin holds back the answer to the first CreateKeysAndCertificate for
    0.5 s and notes when each request arrives: the second arrives only after the first
    answer went out, and each caller gets its own certificate."""
    import asyncio
    import time

    prov = fleet.twin.services.provisioning
    real = prov.handle
    log = []

    def slow_first(request, payload, **kw):
        out = real(request, payload, **kw)
        log.append(("request", request.op, time.monotonic()))
        if len(log) > 1:
            return out

        def answer():
            log.append(("answer", request.op, time.monotonic()))
            for topic, body in out:
                fleet.twin.broker.publish(topic, body)

        fleet.loop.call_later(0.5, answer)
        return []

    async def main():
        claim = device(fleet, "fleet-claim", maximum_packet_size=8192)
        await claim.connect()
        p = Provisioner(claim, "fleet")
        prov.handle = slow_first
        try:
            a, b = await asyncio.gather(p.create_keys_and_certificate(),
                                        p.create_keys_and_certificate())
        finally:
            prov.handle = real
        assert a["certificateId"] != b["certificateId"]
        await claim.disconnect()

    run(main())
    assert [(kind, op) for kind, op, _ in log] == [
        ("request", "create-keys"), ("answer", "create-keys"), ("request", "create-keys")]
    assert log[2][2] > log[1][2]  # the second request came after the first answer


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_no_answer_times_out(fleet, fmt):
    """A claim whose policy lets it subscribe to the answer topics and publish requests
    but not receive the answers (iot:Receive denied: AWS drops them silently): the
    request ends in the library's MqttTimeout, not a hang."""
    from mqtt_v5 import MqttTimeout

    creds = fleet.thing("fleet-deaf-" + fmt)
    deny = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "iot:Receive",
         "Resource": "arn:aws:iot:*:*:topic/$aws/certificates/*"}]}
    fleet.call(fleet.twin.add_policy, "deaf-" + fmt, deny, creds.certificate_id)

    async def main():
        claim = device(fleet, "fleet-deaf-" + fmt, maximum_packet_size=8192)
        await claim.connect()
        p = Provisioner(claim, "fleet", timeout_s=1.0, fmt=fmt)
        with pytest.raises(MqttTimeout, match="fleet provisioning"):
            await p.create_keys_and_certificate()
        # the Provisioner is usable again (its lock was released)
        with pytest.raises(AwsRejected):
            await p.register_thing("", {"SerialNumber": "1"})
        assert claim.is_connected
        await claim.disconnect()

    run(main())


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = str(tmp_path / "key.pem")
    write_atomic(path, b"old")

    def broken_rename(src, dst):
        raise OSError(5, "power lost")

    monkeypatch.setattr(os, "rename", broken_rename)
    monkeypatch.setattr(os, "remove", lambda p: None)
    with pytest.raises(OSError, match="power lost"):
        write_atomic(path, b"new key")
    assert open(path, "rb").read() == b"old"


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12))
def test_cbor_round_trips_and_matches_the_twins_codec(value):
    data = cbor.dumps(value)
    assert cbor.loads(data) == value
    assert twin_cbor.loads(data) == value
    assert cbor.loads(twin_cbor.dumps(value)) == value


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aws_first_boot.py"


def example_args(twin, folder):
    claim = twin.thing("fleet-claim")
    return ["127.0.0.1", str(twin.port("mtls")), twin.ca, str(claim.cert_path),
            str(claim.key_path), "fleet", "77", str(folder), "fleet-claim", "localhost"]


def test_first_boot_example_on_cpython(fleet, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE.parents[1] / "lib"))
    for boot in (1, 2):
        proc = subprocess.run([sys.executable, str(EXAMPLE), *example_args(fleet, tmp_path)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out == {"thing": "sensor-77", "shadow_version": boot}


def test_first_boot_example_on_micropython(fleet, tmp_path, mp_unix_port):
    import mp_unix

    for boot in (1, 2):
        proc = mp_unix.run_script(mp_unix_port, EXAMPLE, mpy=True, heapsize="512k",
                                  args=example_args(fleet, tmp_path))
        out = mp_unix.last_json(proc)
        assert out == {"thing": "sensor-77", "shadow_version": boot}
    assert (tmp_path / "device.crt").read_bytes()[0] == 0x30      # DER for MicroPython's ssl
    assert not list(tmp_path.glob("*.tmp"))


def test_cbor_on_micropython_matches_the_twins_codec(mp_unix_port):
    import binascii

    import mp_unix

    value = {"certificatePem": "-----BEGIN CERTIFICATE-----\nMII...\n", "n": -70000,
             "big": 2**40, "ok": True, "none": None, "raw": b"\x00\xff", "list": [1, "a"]}
    encoded = twin_cbor.dumps(value)
    script = "\n".join([
        "import binascii, json",
        "from mqtt_v5.aws import cbor",
        f"v = cbor.loads(binascii.unhexlify({binascii.hexlify(encoded).decode()!r}))",
        "v['raw'] = binascii.hexlify(v['raw']).decode()",
        "print(json.dumps({'decoded': v, 'encoded': binascii.hexlify(cbor.dumps("
        "{'a': [1, -2, 'x'], 'b': b'\\x01', 'c': None})).decode()}))",
        ""])
    out = mp_unix.last_json(mp_unix.run_script(mp_unix_port, script, mpy=True))
    assert out["decoded"] == {**value, "raw": "00ff"}
    assert twin_cbor.loads(binascii.unhexlify(out["encoded"])) == {
        "a": [1, -2, "x"], "b": b"\x01", "c": None}


def test_create_keys_over_cbor_on_micropython(fleet, mp_unix_port):
    """CreateKeysAndCertificate and RegisterThing through the CBOR topics from the unix
    port (mqtt_v5.aws.cbor decoding AWS's answer on the device)."""
    import mp_unix

    claim = fleet.thing("fleet-claim")
    script = "\n".join([
        "import asyncio, json, sys",
        "from mqtt_v5.aws.connect import aws_client",
        "from mqtt_v5.aws.provisioning import PROVISIONING_PACKET_SIZE, Provisioner",
        "async def main(port, ca, cert, key):",
        "    c = aws_client('127.0.0.1', 'fleet-claim', cert=cert, key=key, ca=ca,",
        "                   port=int(port), server_hostname='localhost', clean_start=True,",
        "                   maximum_packet_size=PROVISIONING_PACKET_SIZE)",
        "    await c.connect()",
        "    p = Provisioner(c, 'fleet', fmt='cbor')",
        "    created = await p.create_keys_and_certificate()",
        "    reg = await p.register_thing(created['certificateOwnershipToken'],",
        "                                 {'SerialNumber': 'mp-cbor'})",
        "    await c.disconnect()",
        "    return {'thing': reg['thingName'], 'id': created['certificateId'],",
        "            'key': created['privateKey'][:30], 'cert': created['certificatePem'][:27]}",
        "print(json.dumps(asyncio.run(main(*sys.argv[1:]))))",
        ""])
    out = mp_unix.last_json(mp_unix.run_script(
        mp_unix_port, script, mpy=True, heapsize="512k",
        args=[fleet.port("mtls"), fleet.ca, claim.cert_path, claim.key_path]))
    assert out["thing"] == "sensor-mp-cbor"
    assert out["cert"] == "-----BEGIN CERTIFICATE-----"
    assert out["key"].startswith("-----BEGIN ")
    cert = fleet.call(fleet.twin.registry.certificates.get, out["id"])
    assert cert is not None
