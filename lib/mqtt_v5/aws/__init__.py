"""mqtt_v5.aws: AWS IoT Core on top of the mqtt_v5 client's public API.

Installed apart from the core (``lib/mqtt_v5/aws/package.json``), and split so a
device pays only for what it imports:

    mqtt_v5.aws.connect       the connection preset and AWS IoT's limits, checked before sending
    mqtt_v5.aws.shadow        Device Shadow (classic and named)
    mqtt_v5.aws.jobs          Jobs, and a small job runner
    mqtt_v5.aws.provisioning  Fleet Provisioning (first boot)
    mqtt_v5.aws.authorizer    custom authorizers (CONNECT username or WebSocket headers)
    mqtt_v5.aws.doctor        the connection doctor

Each service module is pure functions over topics and payloads (assemble a topic,
match one, build a request) plus a thin class that does the I/O through
``MqttClient.subscribe`` / ``publish``. This file holds only the error every
service raises on a ``/rejected`` answer.
"""

import asyncio

from mqtt_v5.errors import MqttError, MqttTimeout


class AwsRejected(MqttError):
    """AWS answered a request on its ``/rejected`` topic.

    ``code``: AWS's code (Shadow: an int such as 404 or 409; Jobs: a string such as
    "VersionMismatch"; Fleet Provisioning: the ``errorCode`` string, with the HTTP-like
    ``statusCode`` in ``status``). ``message``: AWS's text. ``document``: the whole
    error document (a dict).
    """

    def __init__(self, what, document):
        code = document.get("code", document.get("errorCode"))
        message = document.get("message", document.get("errorMessage", ""))
        super().__init__("%s rejected: %s %s" % (what, code, message))
        self.code = code
        self.message = message
        self.status = document.get("statusCode", code if isinstance(code, int) else None)
        self.document = document


class _Request:
    """One request awaiting its answer (Shadow and Jobs): set by the answer's handler."""

    def __init__(self):
        self.event = asyncio.Event()
        self.body = None
        self.error = None


_tasks = []  # type: list


def _spawn(coro):
    """Run ``coro`` as a task, keeping a reference (CPython keeps only weak ones)."""
    t = asyncio.create_task(coro)
    _tasks[:] = [x for x in _tasks if not x.done()]
    _tasks.append(t)
    return t


async def _bounded(coro, timeout_s, what):
    """``await coro`` within ``timeout_s`` or raise ``MqttTimeout``."""
    try:
        return await asyncio.wait_for(coro, timeout_s)
    except asyncio.TimeoutError:
        raise MqttTimeout("%s: no answer within %s s" % (what, timeout_s))


async def _send_wait(client, topic, payload, event):
    """Publish ``payload`` (QoS 1) and wait for ``event`` (set by the answer). Run under
    ``_bounded``: a link that swallows the PUBLISH, its PUBACK or the answer never parks
    the caller. The message stays with the client's session (resent after a reconnect);
    an answer that comes after the timeout is ignored."""
    await client.publish_qos1(topic, payload)
    await event.wait()
