# ruff: noqa: UP031
"""The device half of `make demo` (the weather sensor), one source for CPython and MicroPython.

``tools/iot_twin/demo.py`` runs it in its own process on CPython (``make demo``), or as a
script on the unix port (``python -m iot_twin.demo --micropython BINARY``):

    micropython demo_device.py HOST PORT CA CERT KEY

It uses only ``mqtt_v5.aws``, exactly as against AWS IoT Core. The cloud's part of the
scenario (change the shadow's desired state, queue a job) is asked for through
``cloud(what)``: a direct call on CPython, a line ``@cloud <what>`` on stdout for the
script, which the demo answers. On MicroPython, the last line printed is a JSON summary.
"""

import asyncio
import json
import sys

from mqtt_v5 import UsageError
from mqtt_v5.aws.connect import aws_client
from mqtt_v5.aws.jobs import JobRunner, Jobs
from mqtt_v5.aws.shadow import Shadow

THING = "weather-sensor-001"
STEP_TIMEOUT_S = 10
NEW_INTERVAL_S = 10
JOB = {"operation": "calibrate", "offset": -0.4}


async def until(predicate, what):
    """Wait (bounded) until ``predicate()`` holds."""
    for _ in range(STEP_TIMEOUT_S * 20):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("%s: not within %d s" % (what, STEP_TIMEOUT_S))


async def run_device(host, port, ca, cert, key, cloud, say=print):
    """The scenario, steps 1 to 6; returns a summary (shadow version, job id and status)."""
    say("[1] connect %s over mutual TLS to mqtts://%s:%d" % (THING, host, port))
    say("      CA %s, certificate %s" % (ca, cert))
    say("      device runtime: %s" % (sys.implementation.name,))
    client = aws_client(host, THING, cert=cert, key=key, ca=ca, port=port, keep_alive=30)
    client.options.reconnect_config.max_attempts = 3
    client.on_connection_event(lambda ev: say("      connection event: %r" % (ev,)))
    await client.connect()
    lim = client.limits
    say("      CONNACK: Receive Maximum %s, Maximum QoS %s, Maximum Packet Size %s,"
        " Topic Alias Maximum %s" % (lim.receive_maximum, lim.maximum_qos,
                                     lim.maximum_packet_size, lim.topic_alias_maximum))

    telemetry = "devices/%s/telemetry" % THING
    say("[2] publish telemetry (QoS 1) to %s" % telemetry)
    readings = [{"temperature": 21.5 + i * 0.3, "humidity": 48 + i} for i in range(3)]
    for r in readings:
        pid = await client.publish_qos1(telemetry, json.dumps(r))
        say("      %s acknowledged, packet id %s" % (r, pid))

    say("[3] report state to the device shadow")
    shadow = Shadow(client)
    config = {"report_interval_s": 60, "unit": "C"}
    state = dict(readings[-1])
    state.update(config)
    state["firmware"] = "1.2.3"
    accepted = await shadow.update(reported=state)
    say("      update/accepted, shadow version %s" % accepted["version"])

    def apply(delta, version):
        say("      update/delta (version %s): %s" % (version, delta))
        config.update(delta)
        return delta  # reported back by on_delta, in the same step

    await shadow.on_delta(apply)

    say("[4] the cloud asks for a new report interval (desired state)")
    await cloud("desired")
    await until(lambda: config["report_interval_s"] == NEW_INTERVAL_S, "the delta")
    doc = {}
    for _ in range(STEP_TIMEOUT_S * 20):  # until our report of the delta is in the shadow
        doc = await shadow.get()
        st = doc["state"]
        if st.get("reported", {}).get("report_interval_s") == NEW_INTERVAL_S \
                and "delta" not in st:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("shadow convergence: not within %d s" % STEP_TIMEOUT_S)
    say("      reported report_interval_s=%s; desired and reported agree (version %s)"
        % (config["report_interval_s"], doc["version"]))

    say("[5] the cloud queues a job; the device executes it")

    def calibrate(document, execution):
        say("      running job %s: %s" % (execution["jobId"], document))
        return {"result": "offset applied"}

    runner = JobRunner(Jobs(client), {"calibrate": calibrate})
    run = asyncio.create_task(runner.run())
    await cloud("job")
    await until(lambda: runner.history, "the job")
    runner.stop()
    await asyncio.wait_for(run, STEP_TIMEOUT_S)
    job_id, status = runner.history[0]
    say("      job %s: %s" % (job_id, status))

    say("[6] QoS 2 on AWS IoT: refused before anything is sent")
    try:
        await client.publish(telemetry, b"{}", qos=2)
        raise RuntimeError("QoS 2 was accepted")
    except UsageError as e:
        say("      UsageError: %s" % (e,))

    await client.disconnect()
    return {"shadow_version": doc["version"], "job": job_id, "status": status}


async def _ask(what):
    print("@cloud " + what)


def main(argv):
    host, port, ca, cert, key = argv[:5]
    out = asyncio.run(run_device(host, int(port), ca, cert, key, _ask))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
