"""The Jobs service's device MQTT API (aws-iot-spec §4), no I/O.

``JobStore.handle(request, payload)`` answers GetPendingJobExecutions (``jobs/get``),
StartNextPendingJobExecution (``jobs/start-next``), DescribeJobExecution
(``jobs/{jobId|$next}/get``) and UpdateJobExecution (``jobs/{jobId}/update``) and returns
the ``(topic, payload)`` pairs to publish: the response (AWS delivers it to the requesting
client only, subscribed or not [JOBS-MQTT]; that is the endpoint's job) followed by any
``jobs/notify`` / ``jobs/notify-next`` the change caused, which go to subscribers.

The control-plane side a test or the CLI drives (create, cancel, remove, delete) returns
the notifications too. Time is passed in through the clock: step timers and job
in-progress timeouts turn executions ``TIMED_OUT`` when a call finds them expired, and
:meth:`JobStore.tick` lets the endpoint apply them without a request. Timestamps are
epoch seconds [MS1535], [MS1598].

Notifications follow the current jobs-notifications page [JOBS-NOTIFY] (docs.aws.amazon.com
/iot/latest/developerguide/jobs-comm-notifications.html): a ListNotification (``notify``,
at most 15 pending executions, IN_PROGRESS first, then by queue time) "whenever a new job
execution is queued or changes to a non-terminal status (IN_PROGRESS or QUEUED)" and
when one changes to a terminal status; so starting an execution publishes ``notify``
(the 2022 text and the SDKs' "added to or removed from the list" said otherwise).
``notify-next`` when the head of the list is a different execution.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import persist
from .topics import NEXT_JOB, JobsRequest, is_job_id, is_thing_name, jobs_topic

Clock = Callable[[], float]
Responses = list[tuple[str, bytes]]
Json = Any

QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
REJECTED = "REJECTED"
REMOVED = "REMOVED"
CANCELED = "CANCELED"
STATUSES = (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED)
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED})
DEVICE_SETTABLE = frozenset({IN_PROGRESS, SUCCEEDED, FAILED, REJECTED})  # [JOBS-MQTT]

MAX_STATUS_DETAILS = 10  # [QUOTAS-OLD]
MAX_DETAIL_VALUE_CHARS = 1024  # [JOBS-MODEL] (an older table said 128)
MIN_STEP_TIMEOUT_MIN = 1  # [QUOTAS-OLD] 1..10080 minutes
MAX_STEP_TIMEOUT_MIN = 10080
MAX_JOB_DOCUMENT_BYTES = 32 * 1024  # [JOBS-MODEL], [QUOTAS-OLD]
MAX_LIST_NOTIFICATION = 15  # [JOBS-NOTIFY] current text: 'no more than 15'

_DETAIL_KEY = re.compile(r"[a-zA-Z0-9:_-]{1,128}\Z")  # [JOBS-MODEL]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Error codes [JOBS-ERR], [PY-JOBS]. Their message texts are not documented; ours are ours.
INVALID_TOPIC = "InvalidTopic"
INVALID_JSON = "InvalidJson"
INVALID_REQUEST = "InvalidRequest"
INVALID_STATE_TRANSITION = "InvalidStateTransition"
RESOURCE_NOT_FOUND = "ResourceNotFound"
VERSION_MISMATCH = "VersionMismatch"
INTERNAL_ERROR = "InternalError"
REQUEST_THROTTLED = "RequestThrottled"
TERMINAL_STATE_REACHED = "TerminalStateReached"


class JobError(Exception):
    """A request AWS rejects with ``code``; ``execution_state`` for the two codes that carry it."""

    def __init__(
        self, code: str, message: str, execution_state: dict[str, Json] | None = None
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.execution_state = execution_state


@dataclass
class Job:
    """A job: its document and an optional in-progress timeout (``timeoutConfig``)."""

    job_id: str
    document: dict[str, Json]
    in_progress_timeout_min: int | None = None
    created_at: int = 0


@dataclass
class Execution:
    """One thing's execution of one job."""

    job_id: str
    thing: str
    seq: int  # creation order, the tie-breaker after queuedAt
    queued_at: int
    last_updated_at: int
    status: str = QUEUED
    status_details: dict[str, str] = field(default_factory=dict)
    started_at: int | None = None
    version: int = 1
    execution_number: int = 1
    step_deadline: int | None = None
    in_progress_deadline: int | None = None

    def state(self) -> dict[str, Json]:
        """JobExecutionState: status, statusDetails, versionNumber."""
        return {
            "status": self.status,
            "statusDetails": dict(self.status_details),
            "versionNumber": self.version,
        }

    def summary(self) -> dict[str, Json]:
        """JobExecutionSummary as in ``jobs/get`` and ``jobs/notify``."""
        out: dict[str, Json] = {"jobId": self.job_id, "queuedAt": self.queued_at}
        if self.started_at is not None:
            out["startedAt"] = self.started_at
        out["lastUpdatedAt"] = self.last_updated_at
        out["versionNumber"] = self.version
        out["executionNumber"] = self.execution_number
        return out

    def deadline(self) -> int | None:
        """When this execution times out, if a timer runs."""
        marks = [d for d in (self.step_deadline, self.in_progress_deadline) if d is not None]
        return min(marks) if marks else None


def _dumps(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_int(value: Json) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_status_details(details: Json) -> dict[str, str]:
    """``statusDetails`` as AWS accepts it (§4.3), else raise InvalidRequest."""
    if not isinstance(details, dict):
        raise JobError(INVALID_REQUEST, "statusDetails must be an object")
    if len(details) > MAX_STATUS_DETAILS:
        raise JobError(
            INVALID_REQUEST, f"statusDetails may have at most {MAX_STATUS_DETAILS} entries"
        )
    for key, value in details.items():
        if not _DETAIL_KEY.match(key):
            raise JobError(INVALID_REQUEST, f"Invalid statusDetails key: {key!r}")
        if (
            not isinstance(value, str)
            or not 1 <= len(value) <= MAX_DETAIL_VALUE_CHARS
            or _CONTROL.search(value)
        ):
            raise JobError(INVALID_REQUEST, f"Invalid statusDetails value for key {key!r}")
    return dict(details)


def _validate_step_timeout(value: Json, *, allow_clear: bool) -> int:
    ok = _is_int(value) and (
        MIN_STEP_TIMEOUT_MIN <= value <= MAX_STEP_TIMEOUT_MIN or (allow_clear and value == -1)
    )
    if not ok:
        raise JobError(
            INVALID_REQUEST,
            f"stepTimeoutInMinutes must be between {MIN_STEP_TIMEOUT_MIN} and "
            f"{MAX_STEP_TIMEOUT_MIN}" + (", or -1" if allow_clear else ""),
        )
    return int(value)


class JobStore:
    """Jobs and their executions for every thing.

    ``path``: a JSON file (usually ``<TWIN_DATA>/jobs.json``) loaded at construction and
    rewritten after every change; None keeps the store in memory.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        path: Path | str | None = None,
        events: bool = False,
        thing_arn_prefix: str = "arn:aws:iot:us-east-1:123456789012:thing/",
    ) -> None:
        self.clock = clock
        self.path = Path(path) if path is not None else None
        # Jobs events ($aws/events/jobExecution/..., $aws/events/job/.../completed) are
        # off until enabled, as on AWS [events-jobs]: "enable these jobs events".
        self.events = events
        self.thing_arn_prefix = thing_arn_prefix
        self._ended: list[Execution] = []  # reached a terminal status since the last call
        self._canceling: str | None = None
        self._jobs: dict[str, Job] = {}
        self._executions: dict[tuple[str, str], Execution] = {}
        self._seq = 0
        if self.path is not None:
            data = persist.read_json(self.path)
            if data is not None:
                self._load(data)

    # --- queries ---------------------------------------------------------------------

    def pending(self, thing: str) -> list[Execution]:
        """Pending (QUEUED, IN_PROGRESS) executions: IN_PROGRESS first, then by queue time."""
        found = [
            e for (t, _), e in self._executions.items() if t == thing and e.status not in TERMINAL
        ]
        found.sort(key=lambda e: (e.status != IN_PROGRESS, e.queued_at, e.seq))
        return found

    def execution(self, thing: str, job_id: str) -> Execution | None:
        """The execution of ``job_id`` on ``thing``, whatever its status."""
        return self._executions.get((thing, job_id))

    def job(self, job_id: str) -> Job | None:
        """The job called ``job_id``."""
        return self._jobs.get(job_id)

    def execution_document(
        self,
        e: Execution,
        *,
        include_document: bool = True,
        include_thing: bool = True,
        now: int | None = None,
    ) -> dict[str, Json]:
        """JobExecution as in ``start-next`` / ``get`` responses (§4.2)."""
        out: dict[str, Json] = {"jobId": e.job_id}
        if include_thing:
            out["thingName"] = e.thing
        if include_document:
            out["jobDocument"] = copy.deepcopy(self._jobs[e.job_id].document)
        out["status"] = e.status
        if include_thing and e.status_details:
            out["statusDetails"] = dict(e.status_details)
        out["queuedAt"] = e.queued_at
        if e.started_at is not None:
            out["startedAt"] = e.started_at
        out["lastUpdatedAt"] = e.last_updated_at
        out["versionNumber"] = e.version
        out["executionNumber"] = e.execution_number
        deadline = e.deadline()
        if include_thing and deadline is not None and e.status == IN_PROGRESS and now is not None:
            out["approximateSecondsBeforeTimedOut"] = max(0, deadline - now)
        return out

    # --- control plane ---------------------------------------------------------------

    def create_job(
        self,
        job_id: str,
        document: dict[str, Json],
        things: list[str],
        *,
        in_progress_timeout_minutes: int | None = None,
        queued_at: int | None = None,
    ) -> Responses:
        """Create a job with a QUEUED execution per thing; returns the notifications."""
        if not is_job_id(job_id):
            raise ValueError(f"invalid job id: {job_id!r}")
        if job_id in self._jobs:
            raise ValueError(f"job already exists: {job_id}")
        if not isinstance(document, dict):
            raise ValueError("the job document must be a JSON object")
        if len(_dumps(document)) > MAX_JOB_DOCUMENT_BYTES:
            raise ValueError("the job document exceeds 32 KB")
        if in_progress_timeout_minutes is not None:
            _validate_step_timeout(in_progress_timeout_minutes, allow_clear=False)
        now = int(self.clock())
        out = self._expire(now)
        self._jobs[job_id] = Job(job_id, copy.deepcopy(document), in_progress_timeout_minutes, now)
        for thing in things:
            out += self._add_execution(job_id, thing, queued_at if queued_at is not None else now)
        self._save()
        return out

    def add_things(self, job_id: str, things: list[str]) -> Responses:
        """Queue ``job_id`` on more things (AssociateTargetsWithJob)."""
        if job_id not in self._jobs:
            raise KeyError(job_id)
        now = int(self.clock())
        out = self._expire(now)
        for thing in things:
            out += self._add_execution(job_id, thing, now)
        self._save()
        return out

    def _add_execution(self, job_id: str, thing: str, queued_at: int) -> Responses:
        if not is_thing_name(thing):
            raise ValueError(f"invalid thing name: {thing!r}")
        if (thing, job_id) in self._executions:
            raise ValueError(f"{thing} already has an execution of {job_id}")
        before = self._snapshot(thing)
        self._seq += 1
        self._executions[(thing, job_id)] = Execution(
            job_id, thing, self._seq, queued_at, queued_at
        )
        return self._notifications(thing, before, int(self.clock()))

    def cancel_job(self, job_id: str, *, force: bool = False) -> Responses:
        """CancelJob: QUEUED executions (and IN_PROGRESS ones if ``force``) become CANCELED."""
        if job_id not in self._jobs:
            raise KeyError(job_id)
        things = [t for (t, j) in self._executions if j == job_id]
        out: Responses = []
        self._canceling = job_id  # its end is "canceled", not "completed"
        try:
            for thing in things:
                out += self._end_by_api(thing, job_id, CANCELED, force=force)
        finally:
            self._canceling = None
        if self.events:
            now = int(self.clock())
            body = {
                "eventType": "JOB",
                "eventId": uuid.uuid4().hex,
                "timestamp": now,
                "operation": "canceled",
                "jobId": job_id,
                "status": "CANCELED",
            }
            out.append((f"$aws/events/job/{job_id}/canceled", _dumps(body)))
        return out

    def cancel_execution(self, thing: str, job_id: str, *, force: bool = False) -> Responses:
        """CancelJobExecution."""
        if (thing, job_id) not in self._executions:
            raise KeyError((thing, job_id))
        return self._end_by_api(thing, job_id, CANCELED, force=force)

    def remove_execution(self, thing: str, job_id: str) -> Responses:
        """The thing left the job's target group: its execution becomes REMOVED."""
        if (thing, job_id) not in self._executions:
            raise KeyError((thing, job_id))
        return self._end_by_api(thing, job_id, REMOVED, force=True)

    def delete_execution(self, thing: str, job_id: str) -> Responses:
        """DeleteJobExecution (forced for a pending one): the execution disappears."""
        if (thing, job_id) not in self._executions:
            raise KeyError((thing, job_id))
        now = int(self.clock())
        out = self._expire(now)
        before = self._snapshot(thing)
        del self._executions[(thing, job_id)]
        out += self._notifications(thing, before, now)
        self._save()
        return out

    def _end_by_api(self, thing: str, job_id: str, status: str, *, force: bool) -> Responses:
        now = int(self.clock())
        out = self._expire(now)
        e = self._executions[(thing, job_id)]
        if e.status in TERMINAL or (e.status == IN_PROGRESS and not force):
            return out
        before = self._snapshot(thing)
        self._set_status(e, status, now)
        out += self._notifications(thing, before, now)
        self._save()
        return out

    def tick(self) -> Responses:
        """Time out expired executions now; returns the notifications that causes."""
        return self._expire(int(self.clock()))

    # --- device API ------------------------------------------------------------------

    def handle(self, request: JobsRequest, payload: bytes) -> Responses:
        """Answer a jobs request: expiry notifications, then the response, then notifications."""
        now = int(self.clock())
        out = self._expire(now)
        token: str | None = None
        try:
            if request.op == "invalid":
                raise JobError(INVALID_TOPIC, "Request topic does not match any Jobs API")
            body = self._decode(payload)
            raw_token = body.get("clientToken")
            if raw_token is not None:
                if not isinstance(raw_token, str):
                    raise JobError(INVALID_REQUEST, "clientToken must be a string")
                token = raw_token
            before = self._snapshot(request.thing)
            if request.op == "get":
                doc = self._get_pending(request.thing)
            elif request.op == "start-next":
                doc = self._start_next(request.thing, body, now)
            elif request.op == "describe":
                doc = self._describe(request.thing, request.job_id or "", body, now)
            else:
                doc = self._update(request.thing, request.job_id or "", body, now)
        except JobError as e:
            return [*out, (request.rejected, self.error_payload(e, now, token))]
        doc["timestamp"] = now
        if token is not None:
            doc["clientToken"] = token
        out.append((request.accepted, _dumps(doc)))
        out += self._notifications(request.thing, before, now)
        if request.op in ("start-next", "update"):
            self._save()
        return out

    @staticmethod
    def error_payload(error: JobError, timestamp: int, token: str | None) -> bytes:
        """ErrorResponse [JOBS-ERR]: code, message, clientToken, timestamp, executionState."""
        doc: dict[str, Json] = {"code": error.code, "message": error.message}
        if token is not None:
            doc["clientToken"] = token
        doc["timestamp"] = timestamp
        if error.execution_state is not None:
            doc["executionState"] = error.execution_state
        return _dumps(doc)

    @staticmethod
    def _decode(payload: bytes) -> dict[str, Json]:
        if not payload.strip():
            return {}
        try:
            body = json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise JobError(
                INVALID_JSON, "Request payload is not valid UTF-8 encoded JSON"
            ) from None
        if not isinstance(body, dict):
            raise JobError(INVALID_JSON, "Request payload must be a JSON object")
        return body

    def _get_pending(self, thing: str) -> dict[str, Json]:
        pending = self.pending(thing)
        return {
            "inProgressJobs": [e.summary() for e in pending if e.status == IN_PROGRESS],
            "queuedJobs": [e.summary() for e in pending if e.status == QUEUED],
        }

    def _start_next(self, thing: str, body: dict[str, Json], now: int) -> dict[str, Json]:
        details = body.get("statusDetails")
        if details is not None:
            details = validate_status_details(details)
        step = body.get("stepTimeoutInMinutes")
        if step is not None:
            step = _validate_step_timeout(step, allow_clear=False)
        pending = self.pending(thing)
        if not pending:
            return {}  # [JOBS-MQTT] no `execution` key when nothing is pending
        e = pending[0]
        if e.status == QUEUED:
            # [JOBS-MQTT] QUEUED -> IN_PROGRESS with the given details; an execution
            # already IN_PROGRESS is returned unchanged.
            if details is not None:
                e.status_details = details
            self._set_status(e, IN_PROGRESS, now)
            if step is not None:
                e.step_deadline = now + step * 60
        return {"execution": self.execution_document(e, now=now)}

    def _describe(
        self, thing: str, job_id: str, body: dict[str, Json], now: int
    ) -> dict[str, Json]:
        include = body.get("includeJobDocument", True)  # default true over MQTT [JOBS-MQTT]
        if not isinstance(include, bool):
            raise JobError(INVALID_REQUEST, "includeJobDocument must be a boolean")
        number = body.get("executionNumber")
        if number is not None and not _is_int(number):
            raise JobError(INVALID_REQUEST, "executionNumber must be an integer")
        if job_id == NEXT_JOB:
            pending = self.pending(thing)
            if not pending:
                return {}
            e = pending[0]
        else:
            e = self._find(thing, job_id, number)
            if e.status in TERMINAL:
                # [JOBS-ERR] describe of an execution in a terminal state.
                raise JobError(
                    TERMINAL_STATE_REACHED,
                    f"Job execution {job_id} for thing {thing} is in terminal state {e.status}",
                )
        return {"execution": self.execution_document(e, include_document=include, now=now)}

    def _find(self, thing: str, job_id: str, number: Json) -> Execution:
        e = self._executions.get((thing, job_id))
        if e is None or (number is not None and number != e.execution_number):
            raise JobError(
                RESOURCE_NOT_FOUND, f"Job execution not found for thing {thing} and job {job_id}"
            )
        return e

    def _update(self, thing: str, job_id: str, body: dict[str, Json], now: int) -> dict[str, Json]:
        status = body.get("status")
        if status is None:
            raise JobError(INVALID_REQUEST, "status is required")
        if status not in STATUSES:
            raise JobError(INVALID_REQUEST, f"Invalid status: {status!r}")
        details = body.get("statusDetails")
        if details is not None:
            details = validate_status_details(details)
        step = body.get("stepTimeoutInMinutes")
        if step is not None:
            step = _validate_step_timeout(step, allow_clear=True)
        expected = body.get("expectedVersion")
        if expected is not None and not _is_int(expected):
            raise JobError(INVALID_REQUEST, "expectedVersion must be an integer")
        flags = {}
        for name in ("includeJobExecutionState", "includeJobDocument"):
            flag = body.get(name, False)  # default false [JOBS-MQTT]
            if not isinstance(flag, bool):
                raise JobError(INVALID_REQUEST, f"{name} must be a boolean")
            flags[name] = flag
        number = body.get("executionNumber")
        if number is not None and not _is_int(number):
            raise JobError(INVALID_REQUEST, "executionNumber must be an integer")

        e = self._find(thing, job_id, number)
        # Version first: a device retrying a terminal update after a reconnect gets
        # VersionMismatch, as Greengrass Lite saw on the live service [GGLITE1046].
        if expected is not None and expected != e.version:
            raise JobError(
                VERSION_MISMATCH,
                f"Expected version {expected} does not match current version {e.version}",
                e.state(),
            )
        if e.status in TERMINAL or status not in DEVICE_SETTABLE:
            raise JobError(
                INVALID_STATE_TRANSITION,
                f"Cannot update job execution from {e.status} to {status}",
                e.state(),
            )
        if details is not None:
            e.status_details = details
        self._set_status(e, status, now)
        if status == IN_PROGRESS and step is not None:
            e.step_deadline = None if step == -1 else now + step * 60

        doc: dict[str, Json] = {}
        if flags["includeJobExecutionState"]:
            doc["executionState"] = e.state()
        if flags["includeJobDocument"]:
            doc["jobDocument"] = copy.deepcopy(self._jobs[job_id].document)
        return doc

    # --- state machine ---------------------------------------------------------------

    def _set_status(self, e: Execution, status: str, now: int) -> None:
        if e.status == QUEUED and status == IN_PROGRESS:
            e.started_at = now
            timeout = self._jobs[e.job_id].in_progress_timeout_min
            if timeout is not None:
                e.in_progress_deadline = now + timeout * 60
        if status in TERMINAL:
            e.step_deadline = e.in_progress_deadline = None
            if self.events:
                self._ended.append(e)
        e.status = status
        e.version += 1
        e.last_updated_at = now

    def _expire(self, now: int) -> Responses:
        """TIMED_OUT every IN_PROGRESS execution whose timer ran out by ``now``."""
        expired = [
            e
            for e in self._executions.values()
            if e.status == IN_PROGRESS and (d := e.deadline()) is not None and d <= now
        ]
        out: Responses = []
        for e in sorted(expired, key=lambda e: (e.deadline() or 0, e.seq)):
            before = self._snapshot(e.thing)
            self._set_status(e, TIMED_OUT, now)
            out += self._notifications(e.thing, before, now)
        if expired:
            self._save()
        return out

    # --- notifications ---------------------------------------------------------------

    def _snapshot(self, thing: str) -> tuple[frozenset[tuple[str, str]], str | None]:
        """The pending executions with their statuses, and the head of the list."""
        pending = self.pending(thing)
        return (
            frozenset((e.job_id, e.status) for e in pending),
            pending[0].job_id if pending else None,
        )

    def _notifications(
        self, thing: str, before: tuple[frozenset[tuple[str, str]], str | None], now: int
    ) -> Responses:
        listed_before, head_before = before
        pending = self.pending(thing)
        out: Responses = []
        # An execution queued, removed, or changed between QUEUED and IN_PROGRESS.
        if frozenset((e.job_id, e.status) for e in pending) != listed_before:
            jobs: dict[str, list[dict[str, Json]]] = {}
            for e in pending[:MAX_LIST_NOTIFICATION]:
                jobs.setdefault(e.status, []).append(e.summary())
            out.append((jobs_topic(thing, "notify"), _dumps({"timestamp": now, "jobs": jobs})))
        head = pending[0] if pending else None
        if (head.job_id if head else None) != head_before:
            doc: dict[str, Json] = {"timestamp": now}
            if head is not None:
                doc["execution"] = self.execution_document(head, include_thing=False)
            out.append((jobs_topic(thing, "notify-next"), _dumps(doc)))
        return out + self._job_events(now)

    def _job_events(self, now: int) -> Responses:
        """Jobs events for the executions that ended [events-jobs]: one on
        ``$aws/events/jobExecution/<jobId>/<status>`` each, and ``.../job/<jobId>/completed``
        when the job's last execution ended. Fields beyond the documented example's
        (eventType, eventId, timestamp, operation, jobId, status) are UNVERIFIED."""
        out: Responses = []
        ended, self._ended = self._ended, []
        for e in ended:
            operation = e.status.lower()
            body: dict[str, Json] = {
                "eventType": "JOB_EXECUTION",
                "eventId": uuid.uuid4().hex,
                "timestamp": now,
                "operation": operation,
                "jobId": e.job_id,
                "thingArn": self.thing_arn_prefix + e.thing,
                "status": e.status,
            }
            if e.status_details:
                body["statusDetails"] = dict(e.status_details)
            out.append((f"$aws/events/jobExecution/{e.job_id}/{operation}", _dumps(body)))
            executions = [x for (_, j), x in self._executions.items() if j == e.job_id]
            if e.job_id != self._canceling and all(x.status in TERMINAL for x in executions):
                done = {
                    "eventType": "JOB",
                    "eventId": uuid.uuid4().hex,
                    "timestamp": now,
                    "operation": "completed",
                    "jobId": e.job_id,
                    "status": "COMPLETED",
                }
                out.append((f"$aws/events/job/{e.job_id}/completed", _dumps(done)))
        return out

    # --- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Json]:
        """Everything needed to rebuild the store."""
        return {
            "seq": self._seq,
            "jobs": [asdict(j) for j in self._jobs.values()],
            "executions": [asdict(e) for e in self._executions.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Json], **kwargs: Any) -> JobStore:
        """A store holding what :meth:`to_json` returned; ``kwargs`` as for the constructor."""
        store = cls(**kwargs)
        store._load(data)
        return store

    def _load(self, data: dict[str, Json]) -> None:
        self._seq = data.get("seq", 0)
        self._jobs = {j["job_id"]: Job(**j) for j in data.get("jobs", [])}
        self._executions = {}
        for raw in data.get("executions", []):
            e = Execution(**raw)
            self._executions[(e.thing, e.job_id)] = e

    def _save(self) -> None:
        if self.path is not None:
            persist.write_json_atomic(self.path, self.to_json())
