"""`make demo`: the AWS IoT weather-sensor scenario against the local twin.

It starts the twin in this process (free loopback ports, state in ``$TWIN_DEMO_DATA``,
default ``.twin-demo/``), registers the thing ``weather-sensor-001`` with a certificate, and
then runs the device side with ``mqtt_v5.aws`` exactly as it would run against AWS IoT Core:

1. ``aws_client``: mutual TLS with the thing name as client id, persistent session;
2. publish telemetry (QoS 1) to ``devices/<thing>/telemetry``;
3. ``Shadow.update``: report the sensor state (answer matched by clientToken);
4. the demo (standing in for a cloud application) changes the shadow's desired state;
   ``Shadow.on_delta`` gets only the change, applies it and reports it in the same step;
5. the demo queues a job; ``Jobs.on_next`` wakes the ``JobRunner``, which starts it, runs
   the handler for its ``operation`` and reports SUCCEEDED;
6. QoS 2 is refused up front: AWS IoT Core's CONNACK says Maximum QoS 1.

Every step is printed. Exit status 0 means the whole scenario succeeded.

The device half is ``demo_device.py``, one source for both runtimes: here it runs in this
process on CPython; ``--micropython BINARY`` runs it on the MicroPython unix port instead
(``MICROPYPATH`` from the environment, else ``lib/``), the twin and the cloud's part
staying here: the script asks for the cloud's steps with ``@cloud ...`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from . import demo_device
from .demo_device import JOB, NEW_INTERVAL_S, THING
from .twin import Twin

LIB = Path(__file__).resolve().parents[2] / "lib"


def say(text: str) -> None:
    print(text, flush=True)


class Cloud:
    """The cloud application's part: change the desired state, queue the job; then check
    what the twin (standing in for AWS IoT Core) holds at the end."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.job_id: str | None = None

    async def __call__(self, what: str) -> None:
        if what == "desired":
            self.twin.update_shadow(
                THING, {"state": {"desired": {"report_interval_s": NEW_INTERVAL_S}}}
            )
        elif what == "job":
            self.job_id = self.twin.add_job(THING, JOB)
        else:
            raise RuntimeError(f"the device asked the cloud for {what!r}")

    def verify(self, summary: dict) -> None:
        doc = self.twin.get_shadow(THING) or {}
        st = doc.get("state", {})
        if st.get("reported", {}).get("report_interval_s") != NEW_INTERVAL_S or "delta" in st:
            raise RuntimeError(f"the shadow did not converge: {st}")
        if self.job_id is None or summary.get("job") != self.job_id:
            raise RuntimeError(f"the device ran job {summary.get('job')}, not {self.job_id}")
        ex = self.twin.services.jobs.execution(THING, self.job_id)
        final = ex.status if ex is not None else "missing"
        if final != "SUCCEEDED":
            raise RuntimeError(f"job {self.job_id} ended {final}")


def credentials(twin: Twin) -> tuple[Path, Path]:
    if not (twin.thing_dir(THING) / "cert.pem").exists():
        creds = twin.add_thing(THING)
        return creds.cert_path, creds.key_path
    return twin.thing_dir(THING) / "cert.pem", twin.thing_dir(THING) / "key.pem"


async def on_micropython(binary: str, heapsize: str, args: list[str], cloud: Cloud) -> dict:
    """Run demo_device.py on the unix port; answer its ``@cloud`` lines, echo the rest."""
    env = dict(os.environ)
    env.setdefault("MICROPYPATH", f"{LIB}:.frozen")
    proc = await asyncio.create_subprocess_exec(
        binary, "-X", f"heapsize={heapsize}", demo_device.__file__, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    stdout, stderr = proc.stdout, proc.stderr
    if stdout is None or stderr is None:  # pragma: no cover (both are pipes)
        raise RuntimeError("no pipes to the device")
    last = ""
    try:
        async with asyncio.timeout(120):
            while line := (await stdout.readline()).decode():
                line = line.rstrip("\n")
                if line.startswith("@cloud "):
                    await cloud(line[7:])
                elif line.startswith("{"):
                    last = line
                else:
                    say(line)
            err = (await stderr.read()).decode()
            rc = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if rc != 0 or not last:
        raise RuntimeError(f"the device (MicroPython) exited {rc}:\n{err.strip()}")
    return json.loads(last)


async def scenario(twin: Twin, micropython: str | None = None, heapsize: str = "512k") -> None:
    cert, key = credentials(twin)
    cloud = Cloud(twin)
    args = ["localhost", str(twin.ports["mtls"]), str(twin.ca_path), str(cert), str(key)]
    if micropython:
        say(f"      (the device runs on MicroPython: {micropython})")
        summary = await on_micropython(micropython, heapsize, args, cloud)
    else:
        summary = await demo_device.run_device(
            args[0], int(args[1]), *args[2:], cloud=cloud, say=say
        )
    cloud.verify(summary)
    say("done: telemetry, shadow report, delta, job SUCCEEDED")


async def main(micropython: str | None = None, heapsize: str = "512k") -> int:
    data = Path(os.environ.get("TWIN_DEMO_DATA", ".twin-demo"))
    twin = Twin(data, mtls_port=0, listeners=("mtls",), admin=False)
    say(f"starting the AWS IoT twin (state in {data}/)")
    await twin.start()
    try:
        await scenario(twin, micropython, heapsize)
    finally:
        await twin.stop()
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the AWS IoT weather-sensor demo against the twin")
    ap.add_argument("--micropython", metavar="BINARY",
                    help="run the device half on this MicroPython unix port binary")
    ap.add_argument("--heapsize", default="512k", help="its -X heapsize (default 512k)")
    opts = ap.parse_args()
    try:
        sys.exit(asyncio.run(main(opts.micropython, opts.heapsize)))
    except Exception as e:  # the demo's one job is to say clearly what failed
        print(f"demo FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
