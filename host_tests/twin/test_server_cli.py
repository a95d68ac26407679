"""``python -m iot_twin``: the commands work on the state directory when no twin runs, and
through the running twin's admin endpoint when one does (so subscribers see the effects);
the state directory survives a restart (things, shadows, jobs, retained messages,
persistent sessions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from iot_twin import cli
from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from twin._server_util import PahoClient, running_twin

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, data: Path, *argv: str) -> str:
    assert cli.main(["--data", str(data), *argv]) == 0
    return capsys.readouterr().out


def test_module_entry_point_help():
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'lib'}:{ROOT / 'tools'}")
    out = subprocess.run(
        [sys.executable, "-m", "iot_twin", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for word in (
        "serve",
        "thing",
        "job",
        "template",
        "shadow",
        "connections",
        "TWIN_DATA",
        "TWIN_MTLS_PORT",
        "no AWS equivalent",
    ):
        assert word in out


def test_commands_without_a_running_twin(tmp_path, capsys):
    data = tmp_path / "state"
    out = run(capsys, data, "thing", "add", "t1")
    assert "t1" in out
    assert (data / "ca.pem").exists()
    assert (data / "things" / "t1" / "cert.pem").exists()
    assert (data / "things" / "t1" / "key.pem").exists()
    assert "t1: " in run(capsys, data, "thing", "list")
    doc = tmp_path / "job.json"
    doc.write_text('{"operation": "reboot"}')
    assert "job j1 queued" in run(capsys, data, "job", "add", "t1", str(doc), "--job-id", "j1")
    tpl = tmp_path / "tpl.json"
    tpl.write_text('{"Parameters": {}, "Resources": {}}')
    run(capsys, data, "template", "add", "fleet", str(tpl))
    run(capsys, data, "shadow", "update", "t1", '{"desired": {"led": "on"}}')
    got = json.loads(run(capsys, data, "shadow", "get", "t1"))
    assert got["state"]["delta"] == {"led": "on"}
    assert cli.main(["--data", str(data), "shadow", "get", "ghost"]) == 1


def test_commands_go_through_the_running_twin(tmp_path, capsys):
    with running_twin(tmp_path, admin=True) as tw:
        data = tw.twin.data_dir
        assert (data / "admin.json").exists()
        # A thing added by the CLI can connect at once: the running twin registered it.
        out = run(capsys, data, "thing", "add", "t7")
        assert "t7" in out
        c = PahoClient("t7")
        folder = data / "things" / "t7"
        c.client.tls_set(
            ca_certs=tw.ca, certfile=str(folder / "cert.pem"), keyfile=str(folder / "key.pem")
        )
        c.port = tw.port("mtls")
        c.connect()
        c.subscribe("$aws/things/t7/shadow/update/delta", "$aws/things/t7/jobs/notify-next")
        conns = run(capsys, data, "connections")
        assert "t7" in conns
        assert "x509 via mtls" in conns
        # Shadow update and job add reach the subscribed device.
        run(capsys, data, "shadow", "update", "t7", '{"state": {"desired": {"fan": 2}}}')
        assert json.loads(c.get().payload)["state"] == {"fan": 2}
        doc = tmp_path / "job.json"
        doc.write_text('{"operation": "fw"}')
        run(capsys, data, "job", "add", "t7", str(doc), "--job-id", "fw-1")
        assert json.loads(c.get().payload)["execution"]["jobId"] == "fw-1"
        # Issue 11 item 1: policies attached and detached, and a revoked certificate, act on
        # the live connection (the CLI talks to the running twin).
        cert_id = json.loads(run(capsys, data, "--json", "thing", "list"))[0]["certificates"][0][
            "certificate_id"
        ]
        pol = tmp_path / "deny.json"
        arn = "arn:aws:iot:us-east-1:123456789012"
        pol.write_text(
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Action": "iot:Publish",
                            "Resource": f"{arn}:topic/t7/*",
                        }
                    ],
                }
            )
        )
        run(capsys, data, "policy", "add", "deny-t7", str(pol))
        assert c.publish("t7/x", b"1") == 0
        run(capsys, data, "policy", "attach", "deny-t7", cert_id)
        assert c.publish("t7/x", b"2") == 0x87
        run(capsys, data, "policy", "detach", "deny-t7", cert_id)
        assert c.publish("t7/x", b"3") == 0
        run(capsys, data, "thing", "cert-status", cert_id, "REVOKED")
        assert c.disconnected() == 0x98
        c.close()
    assert not (data / "admin.json").exists()


def test_state_survives_a_restart(tmp_path):
    # Things, shadows, retained messages and persistent sessions with their queue.
    with running_twin(tmp_path) as tw:
        tw.thing("t1")
        tw.call(tw.twin.update_shadow, "t1", {"state": {"reported": {"v": 1}}})
        raw = tw.raw()
        sei = {P.PROP_SESSION_EXPIRY_INTERVAL: 600}
        assert raw.connect("keeper", clean_start=False, properties=sei).reason_code == 0
        raw.send(codec.Subscribe(1, [("kept/q", 1)]))
        raw.recv_type(codec.SUBACK)
        raw.close()
        pub = tw.paho("t1")
        pub.publish("kept/q", b"queued while offline")
        pub.publish("kept/r", b"retained", retain=True)
        pub.close()
    with running_twin(tmp_path) as tw:
        assert tw.call(tw.twin.get_shadow, "t1")["state"]["reported"] == {"v": 1}
        c = tw.paho("t1")  # the certificate from before still works
        c.subscribe("kept/r")
        assert c.get().payload == b"retained"
        c.close()
        raw = tw.raw()
        ack = raw.connect("keeper", clean_start=False, properties=sei)
        assert ack.session_present
        assert raw.recv_type(codec.PUBLISH).payload == b"queued while offline"
        raw.close()
