"""Host command: diagnose a device's connection to AWS IoT Core (or to the twin).

    .venv/bin/python tools/aws_doctor.py ENDPOINT THING --cert cert.pem --key key.pem \
        --ca AmazonRootCA1.pem [--port 8883] [--topic T] [--payload-size N]

Runs ``mqtt_v5.aws.doctor.diagnose`` (DNS, TCP, clock vs certificate, TLS + CONNECT,
SUBSCRIBE, PUBLISH, receive) and prints each step and, for the first failure, the likely
fix. Exit status 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lib") not in sys.path:
    sys.path.insert(0, str(ROOT / "lib"))

from mqtt_v5.aws.doctor import diagnose  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("endpoint")
    p.add_argument("thing")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--client-id")
    p.add_argument("--server-hostname")
    p.add_argument("--topic")
    p.add_argument("--payload-size", type=int, default=64)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args(argv)
    report = asyncio.run(diagnose(a.endpoint, a.thing, a.cert, a.key, a.ca, port=a.port,
                                  client_id=a.client_id, server_hostname=a.server_hostname,
                                  topic=a.topic, payload_size=a.payload_size,
                                  timeout_s=a.timeout))
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
