"""Shadow, Jobs and the WebSocket transport on MicroPython's unix port (modules from .mpy)
against the twin over mutual TLS (and WSS with a custom authorizer)."""

from __future__ import annotations

from pathlib import Path

import mp_unix
import pytest

from .test_authorizer_flow import TOKEN, auth_twin, sign  # noqa: F401 (fixture)

SCRIPT = Path(__file__).parent / "mp" / "aws_device.py"


@pytest.mark.parametrize("mpy", [True, False], ids=["mpy", "py"])
def test_shadow_and_jobs_on_micropython(twin, mp_unix_port, mpy):
    creds = twin.thing("mp-dev")
    twin.call(twin.twin.update_shadow, "mp-dev", {"state": {"desired": {"interval": 5}}})
    a = twin.call(twin.twin.add_job, "mp-dev", {"operation": "blink", "times": 2})
    b = twin.call(twin.twin.add_job, "mp-dev", {"operation": "boom"})
    proc = mp_unix.run_script(mp_unix_port, SCRIPT, mpy=mpy, heapsize="512k", timeout=120,
                              args=["shadow_jobs", "127.0.0.1", twin.port("mtls"), twin.ca,
                                    creds.cert_path, creds.key_path, "mp-dev"])
    out = mp_unix.last_json(proc)
    assert out["get404"] == 404
    assert out["conflict"] == 409
    assert out["delta"] == {"interval": 5}
    assert out["doc"]["reported"] == {"interval": 5, "temp": 21}
    assert "delta" not in out["doc"]
    assert out["runs"] == [[a, "SUCCEEDED"], [b, "FAILED"], None]
    assert out["jobs_rejected"] == "ResourceNotFound"
    assert out["qos2"] == "refused"
    assert "8883" in out["port443"]
    assert "WebSocket" in out["port443"]
    ex = twin.call(twin.twin.services.jobs.execution, "mp-dev", a)
    assert ex.status_details == {"times": "2"}


def test_wss_custom_authorizer_on_micropython(auth_twin, mp_unix_port, tmp_path):  # noqa: F811
    twin = auth_twin
    sig = tmp_path / "signature"
    sig.write_text(sign(TOKEN))
    proc = mp_unix.run_script(mp_unix_port, SCRIPT, mpy=True, heapsize="512k", timeout=120,
                              args=["wss", "127.0.0.1", twin.port("wss"), twin.ca, "dev-7",
                                    sig, TOKEN])
    out = mp_unix.last_json(proc)
    assert "wss" in out["mqtt_transport"]
    assert out["update"] == {"reported": {"via": "wss"}}
    assert out["echo"] == 3000


def test_ws_against_an_independent_server_on_micropython(mosquitto, mp_unix_port):
    import asyncio

    from .ws_bridge import Bridge

    async def main():
        async with Bridge(mosquitto.plain_port) as bridge:
            return await asyncio.to_thread(
                mp_unix.run_script, mp_unix_port, SCRIPT, mpy=True, heapsize="512k",
                args=["ws_plain", f"ws://127.0.0.1:{bridge.port}/mqtt"])

    out = mp_unix.last_json(asyncio.run(main()))
    assert out["got"][:2] == [5, 10240]   # 10 KiB: 16-bit length, 3-byte fragments
    assert out["connected_after_pings"] is True


def test_doctor_on_micropython(twin, mp_unix_port):
    creds = twin.thing("mp-doc")
    base = ["doctor", "127.0.0.1", twin.port("mtls"), twin.ca, creds.cert_path, creds.key_path,
            "mp-doc"]
    ok = mp_unix.last_json(mp_unix.run_script(mp_unix_port, SCRIPT, mpy=True, heapsize="512k",
                                              args=[*base, "mp-doc"]))
    assert ok["steps"] == [["dns", True], ["tcp", True], ["clock", True], ["connect", True],
                           ["subscribe", True], ["publish", True], ["receive", True]]
    bad = mp_unix.last_json(mp_unix.run_script(mp_unix_port, SCRIPT, mpy=True, heapsize="512k",
                                               args=[*base, "not-the-thing"]))
    assert bad["steps"][-1] == ["connect", False]
    assert "iot:Connect for client id 'not-the-thing'" in bad["fix"]


def test_doctor_on_micropython_names_a_refused_client_certificate(twin, pki, mp_unix_port):
    out = mp_unix.last_json(mp_unix.run_script(
        mp_unix_port, SCRIPT, mpy=True, heapsize="512k",
        args=["doctor", "127.0.0.1", twin.port("mtls"), twin.ca, pki.client_cert,
              pki.client_key, "mp-rogue", "mp-rogue"]))
    assert out["steps"][-1] == ["connect", False]
    assert "client certificate is not registered" in out["fix"]


def test_port_443_without_alpn_is_refused_up_front_on_micropython(mp_unix_port):
    # The stock unix firmware's tls has no ALPN: has_alpn() must ask tls (what the SSL
    # context is made from), and X.509 on 443 is then refused before any byte is sent.
    script = (
        "import json, tls\n"
        "from mqtt_v5.aws.connect import aws_client, has_alpn\n"
        "from mqtt_v5.errors import UsageError\n"
        "out = {'has_alpn': has_alpn(), 'tls_alpn': hasattr(tls.SSLContext, "
        "'set_alpn_protocols')}\n"
        "try:\n"
        "    aws_client('127.0.0.1', 't1', cert=b'c', key=b'k', ca=b'a', port=443)\n"
        "    out['refused'] = ''\n"
        "except UsageError as e:\n"
        "    out['refused'] = str(e)\n"
        "print(json.dumps(out))\n")
    r = mp_unix.last_json(mp_unix.run_script(mp_unix_port, script, mpy=True, heapsize="512k"))
    assert r["has_alpn"] is r["tls_alpn"] is False
    assert "ALPN" in r["refused"]
