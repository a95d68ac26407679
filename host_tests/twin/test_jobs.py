"""Jobs device MQTT API (aws-iot-spec §4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iot_twin.jobs import JobStore
from iot_twin.topics import parse_jobs_request

T0 = 1_517_016_947
J = "$aws/things/t1/jobs"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return float(self.now)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(clock: Clock) -> JobStore:
    return JobStore(clock=clock)


def decode(out: list[tuple[str, bytes]]) -> list[tuple[str, Any]]:
    return [(t, json.loads(p)) for t, p in out]


def call(
    store: JobStore, suffix: str, body: Any = None, thing: str = "t1"
) -> list[tuple[str, Any]]:
    req = parse_jobs_request(f"$aws/things/{thing}/jobs/{suffix}")
    assert req is not None
    payload = (
        b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    )
    return decode(store.handle(req, payload))


def test_notification_sequence_from_the_aws_guide(jobs: JobStore, clock: Clock) -> None:
    """§4.2 [JOBS-NOTIFY]: the guide's job1/job2/job3 walk-through, message by message."""
    assert decode(jobs.create_job("job1", {"operation": "test"}, ["t1"])) == [
        (
            f"{J}/notify",
            {
                "timestamp": T0,
                "jobs": {
                    "QUEUED": [
                        {
                            "jobId": "job1",
                            "queuedAt": T0,
                            "lastUpdatedAt": T0,
                            "versionNumber": 1,
                            "executionNumber": 1,
                        }
                    ]
                },
            },
        ),
        (
            f"{J}/notify-next",
            {
                "timestamp": T0,
                "execution": {
                    "jobId": "job1",
                    "jobDocument": {"operation": "test"},
                    "status": "QUEUED",
                    "queuedAt": T0,
                    "lastUpdatedAt": T0,
                    "versionNumber": 1,
                    "executionNumber": 1,
                },
            },
        ),
    ]
    clock.now += 10
    out = decode(jobs.create_job("job2", {"operation": "test"}, ["t1"]))
    assert [t for t, _ in out] == [f"{J}/notify"]  # head unchanged: no notify-next
    assert [j["jobId"] for j in out[0][1]["jobs"]["QUEUED"]] == ["job1", "job2"]

    clock.now += 10
    out = call(jobs, "start-next", {"clientToken": "c1"})
    # [JOBS-NOTIFY] (current): a change to IN_PROGRESS publishes a ListNotification; the
    # head is the same execution, so no notify-next.
    assert [t for t, _ in out] == [f"{J}/start-next/accepted", f"{J}/notify"]
    assert [j["jobId"] for j in out[1][1]["jobs"]["IN_PROGRESS"]] == ["job1"]
    ex = out[0][1]["execution"]
    assert ex["status"] == "IN_PROGRESS"
    assert ex["versionNumber"] == 2
    assert ex["startedAt"] == T0 + 20

    clock.now += 10
    out = decode(jobs.create_job("job3", {"operation": "test"}, ["t1"]))
    assert [t for t, _ in out] == [f"{J}/notify"]
    listing = out[0][1]["jobs"]
    assert [j["jobId"] for j in listing["IN_PROGRESS"]] == ["job1"]
    assert listing["IN_PROGRESS"][0]["startedAt"] == T0 + 20
    assert [j["jobId"] for j in listing["QUEUED"]] == ["job2", "job3"]

    clock.now += 10
    out = call(jobs, "job1/update", {"status": "SUCCEEDED"})
    assert [t for t, _ in out] == [f"{J}/job1/update/accepted", f"{J}/notify", f"{J}/notify-next"]
    assert out[2][1]["execution"]["jobId"] == "job2"

    # job3 jumps the queue: IN_PROGRESS (notify) and the new head (notify-next).
    out = call(jobs, "job3/update", {"status": "IN_PROGRESS"})
    assert [t for t, _ in out] == [f"{J}/job3/update/accepted", f"{J}/notify", f"{J}/notify-next"]
    assert out[2][1]["execution"]["jobId"] == "job3"
    assert out[2][1]["execution"]["status"] == "IN_PROGRESS"

    out = call(jobs, "job2/update", {"status": "REJECTED"})  # QUEUED -> REJECTED
    assert [t for t, _ in out] == [f"{J}/job2/update/accepted", f"{J}/notify"]
    assert list(out[1][1]["jobs"]) == ["IN_PROGRESS"]

    out = decode(jobs.delete_execution("t1", "job3"))
    assert out == [
        (f"{J}/notify", {"timestamp": clock.now, "jobs": {}}),
        (f"{J}/notify-next", {"timestamp": clock.now}),
    ]


def test_get_pending(jobs: JobStore) -> None:
    """§4.2 GetPendingJobExecutions: inProgressJobs and queuedJobs summaries."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    jobs.create_job("b", {"x": 2}, ["t1"])
    call(jobs, "b/update", {"status": "IN_PROGRESS"})
    ((topic, doc),) = call(jobs, "get", {"clientToken": "c"})
    assert topic == f"{J}/get/accepted"
    assert [j["jobId"] for j in doc["inProgressJobs"]] == ["b"]
    assert [j["jobId"] for j in doc["queuedJobs"]] == ["a"]
    assert doc["clientToken"] == "c"
    assert doc["timestamp"] == T0
    assert set(doc["queuedJobs"][0]) == {
        "jobId",
        "queuedAt",
        "lastUpdatedAt",
        "versionNumber",
        "executionNumber",
    }


def test_start_next_with_nothing_pending_has_no_execution(jobs: JobStore) -> None:
    """§4.2: "no `execution` key when nothing is pending"."""
    assert call(jobs, "start-next", {"clientToken": "c"}) == [
        (f"{J}/start-next/accepted", {"timestamp": T0, "clientToken": "c"})
    ]
    assert call(jobs, "$next/get") == [(f"{J}/$next/get/accepted", {"timestamp": T0})]


def test_start_next_sets_details_only_when_queued(jobs: JobStore) -> None:
    """§4.2: QUEUED -> IN_PROGRESS with statusDetails; already IN_PROGRESS: unchanged."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    ex = call(jobs, "start-next", {"statusDetails": {"step": "1"}})[0][1]["execution"]
    assert ex["statusDetails"] == {"step": "1"}
    assert ex["thingName"] == "t1"
    ex = call(jobs, "start-next", {"statusDetails": {"step": "2"}})[0][1]["execution"]
    assert ex["statusDetails"] == {"step": "1"}
    assert ex["versionNumber"] == 2


def test_describe(jobs: JobStore) -> None:
    """§4.2 DescribeJobExecution: includeJobDocument defaults to true; executionNumber."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    ex = call(jobs, "a/get")[0][1]["execution"]
    assert ex["jobDocument"] == {"x": 1}
    ex = call(jobs, "a/get", {"includeJobDocument": False})[0][1]["execution"]
    assert "jobDocument" not in ex
    assert call(jobs, "$next/get")[0][1]["execution"]["jobId"] == "a"
    err = call(jobs, "a/get", {"executionNumber": 2, "clientToken": "q"})
    assert err[0][0] == f"{J}/a/get/rejected"
    assert err[0][1]["code"] == "ResourceNotFound"
    assert err[0][1]["clientToken"] == "q"
    assert call(jobs, "nope/get")[0][1]["code"] == "ResourceNotFound"
    call(jobs, "a/update", {"status": "SUCCEEDED"})
    # §4.4 TerminalStateReached: describe of an execution in a terminal state.
    assert call(jobs, "a/get")[0][1]["code"] == "TerminalStateReached"


def test_update_response_flags(jobs: JobStore) -> None:
    """§4.2 UpdateJobExecution: executionState / jobDocument only when asked for."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    out = call(jobs, "a/update", {"status": "IN_PROGRESS", "clientToken": "u"})
    assert out[0] == (f"{J}/a/update/accepted", {"timestamp": T0, "clientToken": "u"})
    assert [t for t, _ in out[1:]] == [f"{J}/notify"]  # QUEUED -> IN_PROGRESS
    out = call(
        jobs,
        "a/update",
        {
            "status": "IN_PROGRESS",
            "statusDetails": {"p": "50%"},
            "includeJobExecutionState": True,
            "includeJobDocument": True,
        },
    )
    assert out[0][1] == {
        "executionState": {
            "status": "IN_PROGRESS",
            "statusDetails": {"p": "50%"},
            "versionNumber": 3,
        },
        "jobDocument": {"x": 1},
        "timestamp": T0,
    }


def test_version_mismatch_carries_execution_state(jobs: JobStore) -> None:
    """§4.3/§4.4: expectedVersion mismatch -> VersionMismatch with executionState; checked
    before the transition [GGLITE1046]."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    err = call(
        jobs, "a/update", {"status": "SUCCEEDED", "expectedVersion": 7, "clientToken": "v"}
    )[0][1]
    assert err["code"] == "VersionMismatch"
    assert err["executionState"] == {"status": "QUEUED", "statusDetails": {}, "versionNumber": 1}
    assert err["clientToken"] == "v"
    assert call(jobs, "a/update", {"status": "SUCCEEDED", "expectedVersion": 1})[0][0].endswith(
        "/accepted"
    )
    err = call(jobs, "a/update", {"status": "SUCCEEDED", "expectedVersion": 1})[0][1]
    assert err["code"] == "VersionMismatch"


def test_terminal_states_cannot_be_left(jobs: JobStore) -> None:
    """§4.3: leaving a terminal state -> InvalidStateTransition with executionState."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    call(jobs, "a/update", {"status": "FAILED"})
    err = call(jobs, "a/update", {"status": "IN_PROGRESS"})[0][1]
    assert err["code"] == "InvalidStateTransition"
    assert err["executionState"]["status"] == "FAILED"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{nope", "InvalidJson"),
        (b"[]", "InvalidJson"),
        ({}, "InvalidRequest"),  # status required
        ({"status": "DONE"}, "InvalidRequest"),
        ({"status": "QUEUED"}, "InvalidStateTransition"),  # not device-settable
        ({"status": "CANCELED"}, "InvalidStateTransition"),
        (
            {"status": "IN_PROGRESS", "statusDetails": {str(i): "v" for i in range(11)}},
            "InvalidRequest",
        ),
        ({"status": "IN_PROGRESS", "statusDetails": {"bad key": "v"}}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "statusDetails": {"k": ""}}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "statusDetails": {"k": "x" * 1025}}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "statusDetails": {"k": "a\nb"}}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "statusDetails": {"k": 5}}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 0}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 10081}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "expectedVersion": "1"}, "InvalidRequest"),
        ({"status": "IN_PROGRESS", "includeJobDocument": "yes"}, "InvalidRequest"),
    ],
)
def test_update_validation(jobs: JobStore, body: Any, code: str) -> None:
    """§4.3 limits: statusDetails <= 10 entries, key pattern, value 1..1024 no control chars;
    stepTimeoutInMinutes 1..10080 (or -1); §4.4 error codes."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    ((topic, err),) = call(jobs, "a/update", body)
    assert topic == f"{J}/a/update/rejected"
    assert err["code"] == code
    assert err["timestamp"] == T0


def test_status_details_limits_accept_the_edges(jobs: JobStore) -> None:
    jobs.create_job("a", {"x": 1}, ["t1"])
    details = {f"k{i}": "v" for i in range(9)} | {"K:_-" + "x" * 124: "y" * 1024}
    out = call(jobs, "a/update", {"status": "IN_PROGRESS", "statusDetails": details})
    assert out[0][0].endswith("/accepted")


def test_invalid_topic(jobs: JobStore) -> None:
    """§4.4 InvalidTopic for a jobs-namespace topic that maps to no API."""
    ((topic, err),) = call(jobs, "bogus", {"clientToken": "x"})
    assert topic == f"{J}/bogus/rejected"
    assert err["code"] == "InvalidTopic"


def test_step_timeout_times_out(jobs: JobStore, clock: Clock) -> None:
    """§4.3: the step timer expires -> TIMED_OUT (terminal), with notifications."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    ex = call(jobs, "start-next", {"stepTimeoutInMinutes": 2})[0][1]["execution"]
    assert ex["approximateSecondsBeforeTimedOut"] == 120
    clock.now += 119
    assert jobs.tick() == []
    clock.now += 1
    out = decode(jobs.tick())
    assert [t for t, _ in out] == [f"{J}/notify", f"{J}/notify-next"]
    assert jobs.execution("t1", "a").status == "TIMED_OUT"  # type: ignore[union-attr]


def test_step_timer_reset_and_clear(jobs: JobStore, clock: Clock) -> None:
    """§4.3: UpdateJobExecution resets the step timer; -1 clears it."""
    jobs.create_job("a", {"x": 1}, ["t1"])
    call(jobs, "start-next", {"stepTimeoutInMinutes": 1})
    clock.now += 50
    call(jobs, "a/update", {"status": "IN_PROGRESS", "stepTimeoutInMinutes": 1})
    clock.now += 50
    assert jobs.tick() == []
    call(jobs, "a/update", {"status": "IN_PROGRESS", "stepTimeoutInMinutes": -1})
    clock.now += 10_000
    assert jobs.tick() == []
    assert jobs.execution("t1", "a").status == "IN_PROGRESS"  # type: ignore[union-attr]


def test_expiry_is_applied_before_a_request(jobs: JobStore, clock: Clock) -> None:
    """Time given in: a request arriving after the deadline sees TIMED_OUT."""
    jobs.create_job("a", {"x": 1}, ["t1"], in_progress_timeout_minutes=1)
    call(jobs, "start-next")
    clock.now += 61
    out = call(jobs, "a/update", {"status": "SUCCEEDED"})
    assert [t for t, _ in out] == [f"{J}/notify", f"{J}/notify-next", f"{J}/a/update/rejected"]
    assert out[2][1]["code"] == "InvalidStateTransition"
    assert out[2][1]["executionState"]["status"] == "TIMED_OUT"


def test_cancel_and_remove(jobs: JobStore) -> None:
    """§4.3: CANCELED and REMOVED are set by the API side and are terminal."""
    jobs.create_job("a", {"x": 1}, ["t1", "t2"])
    call(jobs, "a/update", {"status": "IN_PROGRESS"})
    out = decode(jobs.cancel_job("a"))
    # t1's IN_PROGRESS execution survives a non-forced cancel; t2's QUEUED one does not.
    assert jobs.execution("t1", "a").status == "IN_PROGRESS"  # type: ignore[union-attr]
    assert jobs.execution("t2", "a").status == "CANCELED"  # type: ignore[union-attr]
    assert [t for t, _ in out] == ["$aws/things/t2/jobs/notify", "$aws/things/t2/jobs/notify-next"]
    jobs.cancel_job("a", force=True)
    assert jobs.execution("t1", "a").status == "CANCELED"  # type: ignore[union-attr]
    jobs.create_job("b", {"x": 1}, ["t1"])
    jobs.remove_execution("t1", "b")
    assert jobs.execution("t1", "b").status == "REMOVED"  # type: ignore[union-attr]


def test_notify_lists_at_most_fifteen(jobs: JobStore, clock: Clock) -> None:
    """[JOBS-NOTIFY] (current): a ListNotification has no more than 15 executions."""
    for i in range(17):
        clock.now += 1
        out = decode(jobs.create_job(f"j{i}", {}, ["t1"]))
    listing = out[0][1]["jobs"]["QUEUED"]
    assert len(listing) == 15
    assert listing[0]["jobId"] == "j0"


def test_control_plane_validation(jobs: JobStore) -> None:
    with pytest.raises(ValueError, match="invalid job id"):
        jobs.create_job("bad id", {}, ["t1"])
    jobs.create_job("a", {}, ["t1"])
    with pytest.raises(ValueError, match="already exists"):
        jobs.create_job("a", {}, ["t1"])
    with pytest.raises(ValueError, match="32 KB"):
        jobs.create_job("big", {"x": "y" * 32768}, ["t1"])


def test_persistence(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "jobs.json"
    a = JobStore(clock=clock, path=path)
    a.create_job("a", {"x": [1, 2]}, ["t1"], in_progress_timeout_minutes=5)
    call(a, "start-next", {"statusDetails": {"k": "v"}, "stepTimeoutInMinutes": 3})
    b = JobStore(clock=clock, path=path)
    assert b.to_json() == a.to_json()
    clock.now += 180
    assert [t for t, _ in decode(b.tick())] == [f"{J}/notify", f"{J}/notify-next"]
    assert JobStore(clock=clock, path=path).execution("t1", "a").status == "TIMED_OUT"  # type: ignore[union-attr]


def test_job_events_when_enabled(clock: Clock) -> None:
    """[events-jobs]: with jobs events enabled, an execution that ends publishes on
    $aws/events/jobExecution/<jobId>/<status>, and the job's last one on .../completed."""
    store = JobStore(clock=clock, events=True)
    store.create_job("j", {"op": 1}, ["t1", "t2"])
    out = call(store, "j/update", {"status": "SUCCEEDED", "statusDetails": {"k": "v"}})
    events = [(t, b) for t, b in out if t.startswith("$aws/events/")]
    assert [t for t, _ in events] == ["$aws/events/jobExecution/j/succeeded"]
    body = events[0][1]
    assert body["eventType"] == "JOB_EXECUTION"
    assert body["status"] == "SUCCEEDED"
    assert body["thingArn"].endswith(":thing/t1")
    assert body["statusDetails"] == {"k": "v"}
    out = decode(store.cancel_execution("t2", "j"))
    assert [t for t, _ in out if t.startswith("$aws/events/")] == [
        "$aws/events/jobExecution/j/canceled",
        "$aws/events/job/j/completed",
    ]
    # CancelJob: the executions' events, then the job's "canceled" (not "completed").
    store.create_job("k", {}, ["t1", "t2"])
    out = decode(store.cancel_job("k"))
    assert [t for t, _ in out if t.startswith("$aws/events/")] == [
        "$aws/events/jobExecution/k/canceled",
        "$aws/events/jobExecution/k/canceled",
        "$aws/events/job/k/canceled",
    ]
    # Off by default, as on AWS.
    quiet = JobStore(clock=clock)
    quiet.create_job("j", {}, ["t1"])
    assert not [t for t, _ in call(quiet, "j/update", {"status": "FAILED"}) if "events" in t]
