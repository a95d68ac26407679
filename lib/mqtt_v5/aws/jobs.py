"""AWS IoT Jobs (the device MQTT API), and a small job runner.

    from mqtt_v5.aws.jobs import Jobs, JobRunner
    jobs = Jobs(client, "weather-sensor-001")
    runner = JobRunner(jobs, {"reboot": do_reboot, "set-interval": set_interval})
    await runner.run()          # start-next, run the handler, report, wait for notify-next

Topics, payloads, codes: aws-iot-spec section 4. The pure functions (``jobs_topic``,
``match_jobs_topic``, ``update_request``, ``check_status_details``) do no I/O. ``Jobs``
publishes through the client and takes the answers through ``client.on_message``: AWS
delivers a jobs ``/accepted`` or ``/rejected`` straight to the requesting client,
subscribed or not (the "Receive" in AWS's topic table), so none of the 50 subscriptions
is spent on them. Each request carries a ``clientToken`` and has a timeout; a
``/rejected`` raises ``AwsRejected`` with AWS's code ("VersionMismatch",
"InvalidStateTransition", "ResourceNotFound", "TerminalStateReached", ...) and, where AWS
sends it, the execution state in ``error.document["executionState"]``.

``on_message`` gets what no subscription callback took: do not also subscribe
``$aws/things/<thing>/jobs/#`` with a callback of your own. Make one ``Jobs`` per thing
and keep it (each registers its answer handler with the client).
"""

import asyncio
import json
import random

from mqtt_v5.aws import AwsRejected, _bounded, _Request, _send_wait, _spawn
from mqtt_v5.errors import MqttError, MqttTimeout, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Optional, Union  # noqa: F401

QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
REJECTED = "REJECTED"
_DEVICE_STATUSES = (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED)
MAX_STATUS_DETAILS = 10
MAX_DETAIL_KEY = 128
MAX_DETAIL_VALUE = 1024
MAX_JOB_ID = 64
MIN_STEP_TIMEOUT_MIN = 1
MAX_STEP_TIMEOUT_MIN = 10080
NEXT = "$next"


def _name_ok(s, n, extra=":"):
    if not isinstance(s, str) or not 0 < len(s) <= n:
        return False
    for ch in s:
        if not (ch.isalpha() or ch.isdigit() or ch == "_" or ch == "-" or ch in extra):
            return False
    return s.isascii() if hasattr(s, "isascii") else True


def jobs_topic(thing, op, job_id=None):
    # type: (str, str, Optional[str]) -> str
    """``$aws/things/<thing>/jobs/<op>``, or ``.../jobs/<job_id>/<op>`` (op "get" or
    "update", job_id may be "$next"). ``op`` may end in "/accepted" or "/rejected"."""
    if not _name_ok(thing, 128):
        raise UsageError("invalid thing name %r (1..128 of [a-zA-Z0-9:_-])" % (thing,))
    if job_id is None:
        return "$aws/things/%s/jobs/%s" % (thing, op)
    if job_id != NEXT and not _name_ok(job_id, MAX_JOB_ID, ""):
        raise UsageError("invalid job id %r (1..64 of [a-zA-Z0-9_-])" % (job_id,))
    return "$aws/things/%s/jobs/%s/%s" % (thing, job_id, op)


def match_jobs_topic(topic):
    # type: (str) -> Optional[tuple]
    """``(thing, job_id or None, op, answer)`` for a Jobs topic (answer: "accepted",
    "rejected" or None), e.g. ``("t1", "j1", "update", "accepted")``; None otherwise."""
    if not topic.startswith("$aws/things/"):
        return None
    parts = topic[12:].split("/")
    if len(parts) < 3 or parts[1] != "jobs" or not parts[0]:
        return None
    thing = parts[0]
    rest = parts[2:]
    answer = None
    if rest[-1] in ("accepted", "rejected"):
        answer = rest.pop()
    if (len(rest) == 1 and rest[0] in ("get", "start-next")) or (
            len(rest) == 1 and answer is None and rest[0] in ("notify", "notify-next")):
        return thing, None, rest[0], answer
    if len(rest) == 2 and rest[1] in ("get", "update") and rest[0]:
        return thing, rest[0], rest[1], answer
    return None


def check_status_details(details):
    # type: (Optional[dict]) -> None
    """Raise ``UsageError`` if ``statusDetails`` breaks AWS's limits: at most 10 pairs,
    keys 1..128 of [a-zA-Z0-9:_-], values strings of 1..1024 characters without control
    characters (AWS rejects the update otherwise)."""
    if details is None:
        return
    if not isinstance(details, dict):
        raise UsageError("statusDetails must be a dict of str to str")
    if len(details) > MAX_STATUS_DETAILS:
        raise UsageError("statusDetails has %d entries; AWS allows %d"
                         % (len(details), MAX_STATUS_DETAILS))
    for k, v in details.items():
        if not _name_ok(k, MAX_DETAIL_KEY):
            raise UsageError("statusDetails key %r: 1..128 of [a-zA-Z0-9:_-]" % (k,))
        if not isinstance(v, str) or not 0 < len(v) <= MAX_DETAIL_VALUE:
            raise UsageError("statusDetails[%r]: a string of 1..1024 characters" % (k,))
        for ch in v:
            o = ord(ch)
            if o < 0x20 or 0x7F <= o <= 0x9F:
                raise UsageError("statusDetails[%r] holds a control character" % (k,))


def _check_step(step_timeout_min, allow_clear=False):
    if step_timeout_min is None or (allow_clear and step_timeout_min == -1):
        return
    if not isinstance(step_timeout_min, int) or isinstance(step_timeout_min, bool) \
            or not MIN_STEP_TIMEOUT_MIN <= step_timeout_min <= MAX_STEP_TIMEOUT_MIN:
        raise UsageError("stepTimeoutInMinutes is 1..10080%s"
                         % (" (or -1 to clear it)" if allow_clear else ""))


def update_request(status, status_details=None, expected_version=None, execution_number=None,
                   step_timeout_min=None, include_state=False, include_document=False):
    """The UpdateJobExecution request (a dict, without clientToken), checked."""
    if status not in _DEVICE_STATUSES:
        raise UsageError("a device sets a job to IN_PROGRESS, SUCCEEDED, FAILED or REJECTED, "
                         "not %r" % (status,))
    check_status_details(status_details)
    _check_step(step_timeout_min, True)
    body = {"status": status}
    if status_details is not None:
        body["statusDetails"] = status_details
    if expected_version is not None:
        body["expectedVersion"] = expected_version
    if execution_number is not None:
        body["executionNumber"] = execution_number
    if step_timeout_min is not None:
        body["stepTimeoutInMinutes"] = step_timeout_min
    if include_state:
        body["includeJobExecutionState"] = True
    if include_document:
        body["includeJobDocument"] = True
    return body


class Jobs:
    """The Jobs device API of one thing. ``timeout_s`` bounds each request."""

    def __init__(self, client, thing=None, timeout_s=10.0):
        if thing is None:
            thing = getattr(client, "thing_name", None) or client.options.client_id
        self.client = client
        self.thing = thing
        self.prefix = jobs_topic(thing, "")  # "$aws/things/<thing>/jobs/"
        self.timeout_s = timeout_s
        self._pending = {}
        self._tag = "%08x" % random.getrandbits(32)
        self._n = 0
        client.on_message(self._on_answer)
        self._next_cb = None  # type: Any
        self._notify_cb = None  # type: Any

    async def get_pending(self):
        # type: () -> dict
        """GetPendingJobExecutions: ``{"inProgressJobs": [...], "queuedJobs": [...]}``."""
        return await self._request("get", {})

    async def start_next(self, status_details=None, step_timeout_min=None):
        # type: (Optional[dict], Optional[int]) -> Optional[dict]
        """StartNextPendingJobExecution: the execution now IN_PROGRESS (with its
        ``jobDocument``), or None when nothing is pending."""
        check_status_details(status_details)
        _check_step(step_timeout_min)
        body = {}  # type: dict
        if status_details is not None:
            body["statusDetails"] = status_details
        if step_timeout_min is not None:
            body["stepTimeoutInMinutes"] = step_timeout_min
        return (await self._request("start-next", body)).get("execution")

    async def describe(self, job_id=NEXT, execution_number=None, include_document=True):
        # type: (str, Optional[int], bool) -> Optional[dict]
        """DescribeJobExecution (``job_id`` or "$next"): the execution, or None."""
        body = {"includeJobDocument": include_document}  # type: dict
        if execution_number is not None:
            body["executionNumber"] = execution_number
        return (await self._request("get", body, job_id)).get("execution")

    async def update(self, job_id, status, status_details=None, expected_version=None,
                     step_timeout_min=None, include_state=False, execution_number=None):
        """UpdateJobExecution; returns AWS's answer (``executionState`` with
        ``include_state``). ``expected_version``: refused with "VersionMismatch" if the
        execution has moved on (leave it out unless you need it: a reconnect race makes
        it fail spuriously)."""
        body = update_request(status, status_details, expected_version, execution_number,
                              step_timeout_min, include_state)
        return await self._request("update", body, job_id)

    async def _request(self, op, body, job_id=None):
        self._n += 1
        token = "%s-%d" % (self._tag, self._n)
        body["clientToken"] = token
        topic = jobs_topic(self.thing, op, job_id)
        req = _Request()
        self._pending[token] = req
        try:
            await _bounded(_send_wait(self.client, topic, json.dumps(body).encode(), req.event),
                           self.timeout_s, "jobs %s (answers over maximum_packet_size=%d "
                           "bytes, e.g. a big job document, are dropped by AWS)"
                           % (topic, self.client.options.maximum_packet_size))
        finally:
            self._pending.pop(token, None)
        if req.error is not None:
            raise req.error
        return req.body

    def _on_answer(self, msg):
        topic = msg.topic
        if not topic.startswith(self.prefix):
            return
        rejected = topic.endswith("/rejected")
        if not rejected and not topic.endswith("/accepted"):
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        req = self._pending.get(body.get("clientToken")) if isinstance(body, dict) else None
        if req is None:
            return
        if rejected:
            req.error = AwsRejected("jobs " + topic[len(self.prefix):-9], body)
        else:
            req.body = body
        req.event.set()

    # ------------------------------------------------------------ notifications --

    async def on_next(self, handler):
        # type: (Callable) -> None
        """Subscribe to ``jobs/notify-next``: ``handler(execution or None)`` whenever the
        next pending job changes (None: the queue is empty)."""
        self._next_cb = handler
        await self.client.subscribe(self.prefix + "notify-next", self._on_next, qos=1)

    def _on_next(self, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        r = self._next_cb(body.get("execution"))
        if hasattr(r, "send"):
            _spawn(r)

    async def on_notify(self, handler):
        # type: (Callable) -> None
        """Subscribe to ``jobs/notify``: ``handler(jobs)`` with the pending executions
        by status (``{"QUEUED": [...], "IN_PROGRESS": [...]}``; ``{}`` when none)."""
        self._notify_cb = handler
        await self.client.subscribe(self.prefix + "notify", self._on_notify, qos=1)

    def _on_notify(self, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        r = self._notify_cb(body.get("jobs", {}))
        if hasattr(r, "send"):
            _spawn(r)


class JobRunner:
    """Runs jobs one at a time: starts the next pending job, calls the handler for its
    document's ``operation`` (``handlers[operation](document, execution)``, plain or
    async), and reports the outcome: SUCCEEDED (statusDetails: what the handler
    returned, if a dict), FAILED when it raises (statusDetails: the error), REJECTED
    when no handler knows the operation. ``operation_key`` names the field to look up.

    A job whose outcome could not be reported (the link stayed down) is not run again
    when AWS hands it out once more (IN_PROGRESS jobs come first): its outcome is
    reported. A device that restarts has no such memory: AWS's delivery is at least
    once, so handlers should be safe to run twice.

    ``step_timeout_min`` (1..10080) is sent with each start-next: AWS times the
    execution out (TIMED_OUT) if the handler has not finished by then."""

    def __init__(self, jobs, handlers, operation_key="operation", step_timeout_min=None):
        _check_step(step_timeout_min)  # refused here, not at the first start-next
        self.jobs = jobs
        self.handlers = handlers
        self.operation_key = operation_key
        self.step_timeout_min = step_timeout_min
        self._wake = asyncio.Event()
        self._stopping = False
        self._unreported = None  # type: Any  # (job id, status, details) not yet reported
        self.history = []  # (job id, status) of the jobs this runner finished

    async def run_once(self):
        # type: () -> Optional[tuple]
        """Run the next pending job, if any; returns ``(job_id, status)`` or None."""
        ex = await self.jobs.start_next(step_timeout_min=self.step_timeout_min)
        u = self._unreported
        self._unreported = None
        if ex is None:
            return None
        job_id = ex["jobId"]
        if u is not None and u[0] == job_id:
            await self._finish(*u)
            return job_id, u[1]
        doc = ex.get("jobDocument") or {}
        op = doc.get(self.operation_key) if isinstance(doc, dict) else None
        handler = self.handlers.get(op)
        details = None
        if handler is None:
            status = REJECTED
            details = {"reason": ("no handler for operation %r" % (op,))[:MAX_DETAIL_VALUE]}
        else:
            try:
                r = handler(doc, ex)
                if hasattr(r, "send"):
                    r = await r
                status = SUCCEEDED
                if isinstance(r, dict):
                    details = r
            except Exception as e:
                status = FAILED
                details = {"error": (repr(e) or "error")[:MAX_DETAIL_VALUE]}
        try:
            check_status_details(details)
        except UsageError as e:
            status = FAILED
            details = {"error": ("the handler's result is not valid statusDetails: %s"
                                 % e)[:MAX_DETAIL_VALUE]}
        await self._finish(job_id, status, details)
        return job_id, status

    async def _finish(self, job_id, status, details):
        self._unreported = (job_id, status, details)
        await self._report(job_id, status, details)
        self._unreported = None
        self.history.append((job_id, status))

    async def _report(self, job_id, status, details):
        # A link that drops here is not fatal: the QoS 1 update is resent after the
        # reconnect. If its answer was lost on the way, ask how the job stands and
        # send again only if it has not reached the status yet.
        for _ in range(3):
            try:
                await self.jobs.update(job_id, status, details)
                return
            except MqttTimeout:
                pass
            except AwsRejected:
                pass
            try:
                ex = await self.jobs.describe(job_id, include_document=False)
            except AwsRejected as e:
                if e.code == "TerminalStateReached":
                    return
                raise
            if ex is not None and ex.get("status") == status:
                return
        raise MqttError("job %s: could not report %s" % (job_id, status))

    async def run(self):
        # type: () -> None
        """Run jobs until ``stop()``: every pending one, then each one announced on
        ``jobs/notify-next``, and whatever is pending after a reconnect (a notification
        sent while the device was away is lost with its session)."""
        self._stopping = False
        await self.jobs.on_next(self._on_next)
        self.jobs.client.on_connection_event(self._on_event)
        while not self._stopping:
            self._wake.clear()
            try:
                while not self._stopping and (await self.run_once()) is not None:
                    pass
            except MqttError as e:  # the link dropped, or AWS refused: try again soon
                print("mqtt_v5.aws.jobs: runner:", repr(e))
                await asyncio.sleep(1)
                continue
            if not self._stopping:
                await self._wake.wait()

    def stop(self):
        """Make ``run()`` return once the job at hand (if any) is reported."""
        self._stopping = True
        self._wake.set()

    def _on_next(self, execution):
        if execution is not None:
            self._wake.set()

    def _on_event(self, event):
        if getattr(event, "session_present", None) is not None:  # Connected
            self._wake.set()
