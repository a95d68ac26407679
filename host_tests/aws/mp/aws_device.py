# Runs on MicroPython's unix port (and CPython): the device side of the AWS flows against
# the twin. Usage: aws_device.py SCENARIO HOST MTLS_PORT CA CERT KEY THING [extra...]
# Prints one JSON object as its last line.
import asyncio
import json
import sys

from mqtt_v5 import ReconnectConfig, UsageError
from mqtt_v5.aws import AwsRejected
from mqtt_v5.aws.connect import aws_client


def fast():
    return ReconnectConfig(initial_delay=0.1, max_delay=0.5, jitter=0)


async def shadow_and_jobs(host, port, ca, cert, key, thing):
    from mqtt_v5.aws.jobs import JobRunner, Jobs
    from mqtt_v5.aws.shadow import Shadow

    out = {}
    c = aws_client(host, thing, cert=cert, key=key, ca=ca, port=port,
                   server_hostname="localhost", reconnect_config=fast())
    await c.connect()
    s = Shadow(c)
    try:
        await Shadow(c, name="absent").get()
        out["get404"] = False
    except AwsRejected as e:
        out["get404"] = e.code
    acc = await s.update(reported={"temp": 21})
    v = acc["version"]
    try:
        await s.update(reported={"temp": 1}, version=v - 1)
    except AwsRejected as e:
        out["conflict"] = e.code
    applied = []
    got = asyncio.Event()

    def apply(state, version):
        applied.append(state)
        got.set()

    await s.on_delta(apply)          # resync: the twin's pending desired state arrives
    await asyncio.wait_for(got.wait(), 5)
    out["delta"] = applied[0]
    await asyncio.sleep(0.3)
    out["doc"] = (await s.get())["state"]

    def blink(doc, ex):
        return {"times": str(doc["times"])}

    def boom(doc, ex):
        raise ValueError("nope")

    jobs = Jobs(c)
    runner = JobRunner(jobs, {"blink": blink, "boom": boom})
    out["runs"] = [await runner.run_once(), await runner.run_once(), await runner.run_once()]
    try:
        await jobs.update("no-such-job", "IN_PROGRESS")
    except AwsRejected as e:
        out["jobs_rejected"] = e.code
    try:
        await c.publish("t", b"x", qos=2)
    except UsageError:
        out["qos2"] = "refused"
    try:
        aws_client(host, thing, cert=cert, key=key, ca=ca, port=443)
    except UsageError as e:
        out["port443"] = str(e)
    await c.disconnect()
    return out


async def wss(host, port, ca, thing, signature, token):
    from mqtt_v5.aws.authorizer import authorizer_client
    from mqtt_v5.aws.shadow import Shadow

    out = {}
    try:
        authorizer_client(host, thing, "DevAuth", "token", token, signature, ca=ca,
                          transport="mqtt", port=port)
    except UsageError as e:
        out["mqtt_transport"] = str(e)
    c = authorizer_client(host, thing, "DevAuth", "token", token, signature, ca=ca,
                          port=port, server_hostname="localhost", reconnect_config=fast(),
                          maximum_packet_size=4096)
    await c.connect()
    s = Shadow(c, thing)
    out["update"] = (await s.update(reported={"via": "wss"}))["state"]
    big = b"y" * 3000
    got = asyncio.Event()
    seen = []
    await c.subscribe("wss/echo", lambda m: (seen.append(len(m.payload)), got.set()), qos=1)
    await c.publish_qos1("wss/echo", big)
    await asyncio.wait_for(got.wait(), 5)
    out["echo"] = seen[0]
    await c.disconnect()
    return out


async def ws_plain(url):
    # any broker over ws:// (here: the websockets library bridging to Mosquitto)
    from mqtt_v5 import ConnectOptions, MqttClient

    c = MqttClient(ConnectOptions("mp-ws", maximum_packet_size=16384))
    await c.connect(url)
    got = []
    done = asyncio.Event()

    def on_msg(m):
        got.append(len(m.payload))
        if len(got) == 2:
            done.set()

    await c.subscribe("mp/ws/#", on_msg, qos=1)
    await c.publish_qos1("mp/ws/a", b"hello")
    await c.publish_qos1("mp/ws/b", bytes(range(256)) * 40)
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(0.6)  # the server pings every 0.2 s
    connected = c.is_connected
    await c.publish_qos1("mp/ws/a", b"after pings")
    await c.disconnect()
    return {"got": got, "connected_after_pings": connected}


async def doctor(host, port, ca, cert, key, thing, client_id):
    from mqtt_v5.aws.doctor import diagnose

    r = await diagnose(host, thing, cert, key, ca, port=port, client_id=client_id,
                       server_hostname="localhost", timeout_s=3)
    print(r)
    return {"steps": [[s.name, s.ok] for s in r.steps],
            "fix": r.failed.fix if r.failed else None}


def main():
    a = sys.argv[1:]
    if a[0] == "doctor":
        print(json.dumps(asyncio.run(doctor(a[1], int(a[2]), a[3], a[4], a[5], a[6], a[7]))))
        return
    if a[0] == "ws_plain":
        print(json.dumps(asyncio.run(ws_plain(a[1]))))
        return
    if a[0] == "shadow_jobs":
        out = asyncio.run(shadow_and_jobs(a[1], int(a[2]), a[3], a[4], a[5], a[6]))
    else:
        # the signature comes in a file: an argument of 256+ characters crashes the
        # unix port at start-up ("FATAL: uncaught NLR": argv becomes qstrs, at most 255)
        with open(a[5]) as f:
            signature = f.read()
        out = asyncio.run(wss(a[1], int(a[2]), a[3], a[4], signature, a[6]))
    print(json.dumps(out))


main()
