"""Jobs through mqtt_v5.aws.jobs against the AWS IoT twin over mutual TLS."""

from __future__ import annotations

import asyncio

import pytest
from netutil import FaultProxy

from mqtt_v5 import UsageError
from mqtt_v5.aws import AwsRejected
from mqtt_v5.aws.jobs import (
    JobRunner,
    Jobs,
    check_status_details,
    jobs_topic,
    match_jobs_topic,
    update_request,
)

from .conftest import device, run


def execution(twin, thing, job_id):
    return twin.call(twin.twin.services.jobs.execution, thing, job_id)


def test_topics_assemble_and_match():
    assert jobs_topic("t1", "start-next") == "$aws/things/t1/jobs/start-next"
    assert jobs_topic("t1", "update", "j-1") == "$aws/things/t1/jobs/j-1/update"
    assert jobs_topic("t1", "get", "$next") == "$aws/things/t1/jobs/$next/get"
    assert match_jobs_topic("$aws/things/t1/jobs/j-1/update/accepted") == (
        "t1", "j-1", "update", "accepted")
    assert match_jobs_topic("$aws/things/t1/jobs/notify-next") == ("t1", None, "notify-next", None)
    assert match_jobs_topic("$aws/things/t1/jobs/start-next/rejected") == (
        "t1", None, "start-next", "rejected")
    for other in ("$aws/things/t1/shadow/get", "$aws/things/t1/jobs/x/y/z",
                  "$aws/things/t1/jobs/notify/accepted", "foo"):
        assert match_jobs_topic(other) is None, other
    with pytest.raises(UsageError):
        jobs_topic("t1", "update", "bad/id")


@pytest.mark.parametrize("details", [
    {str(i): "v" for i in range(11)},        # more than 10 pairs
    {"bad key": "v"},                        # key outside [a-zA-Z0-9:_-]
    {"k": ""},                               # empty value
    {"k": "x" * 1025},                       # value over 1024 characters
    {"k": "a\nb"},                           # control character
    {"k": 5},                                # not a string
])
def test_status_details_limits_checked(details):
    with pytest.raises(UsageError):
        check_status_details(details)
    with pytest.raises(UsageError):
        update_request("SUCCEEDED", details)


def test_update_request_checks_status_and_step_timeout():
    with pytest.raises(UsageError):
        update_request("QUEUED")
    with pytest.raises(UsageError):
        update_request("IN_PROGRESS", step_timeout_min=0)
    assert update_request("IN_PROGRESS", step_timeout_min=-1)["stepTimeoutInMinutes"] == -1
    assert update_request("FAILED", {"k": "v"}, expected_version=3) == {
        "status": "FAILED", "statusDetails": {"k": "v"}, "expectedVersion": 3}


def test_device_api_and_rejections(twin):
    async def main():
        c = device(twin, "jobs-1")
        await c.connect()
        jobs = Jobs(c)
        nexts = []
        got_next = asyncio.Event()
        await jobs.on_next(lambda ex: (nexts.append(ex), got_next.set()))
        notes = []
        await jobs.on_notify(notes.append)
        assert await jobs.start_next() is None
        pending = await jobs.get_pending()
        assert pending["inProgressJobs"] == []
        assert pending["queuedJobs"] == []

        job = twin.call(twin.twin.add_job, "jobs-1", {"operation": "blink", "times": 3})
        await asyncio.wait_for(got_next.wait(), 5)
        assert nexts[-1]["jobId"] == job
        assert [j["jobId"] for j in (await jobs.get_pending())["queuedJobs"]] == [job]
        ex = await jobs.start_next(status_details={"step": "download"}, step_timeout_min=5)
        assert ex["jobId"] == job
        assert ex["status"] == "IN_PROGRESS"
        assert ex["jobDocument"] == {"operation": "blink", "times": 3}
        described = await jobs.describe(job)
        assert described["statusDetails"] == {"step": "download"}
        version = described["versionNumber"]

        # a stale expectedVersion: AWS's VersionMismatch with the current state
        with pytest.raises(AwsRejected) as e:
            await jobs.update(job, "IN_PROGRESS", expected_version=version - 1)
        assert e.value.code == "VersionMismatch"
        answer = await jobs.update(job, "IN_PROGRESS", {"step": "flash"},
                                   expected_version=version, include_state=True)
        assert answer["executionState"]["statusDetails"] == {"step": "flash"}
        await jobs.update(job, "SUCCEEDED")
        for _ in range(100):
            if notes and notes[-1] == {}:
                break
            await asyncio.sleep(0.05)
        assert [j["jobId"] for j in notes[0]["QUEUED"]] == [job]   # jobs/notify: queued
        assert notes[-1] == {}                                     # ... and none left
        assert nexts[-1] is None                                   # notify-next: empty
        with pytest.raises(AwsRejected) as e:  # out of a terminal state
            await jobs.update(job, "IN_PROGRESS")
        assert e.value.code == "InvalidStateTransition"
        with pytest.raises(AwsRejected) as e:
            await jobs.update("no-such-job", "IN_PROGRESS")
        assert e.value.code == "ResourceNotFound"
        # the bad statusDetails never reach the wire
        with pytest.raises(UsageError):
            await jobs.update(job, "FAILED", {"k": "x" * 2000})
        await c.disconnect()

    run(main())


def test_runner_success_failure_and_unknown_operation(twin):
    async def main():
        c = device(twin, "jobs-run")
        await c.connect()
        ran = []

        def blink(doc, ex):
            ran.append(doc["times"])
            return {"blinked": str(doc["times"])}

        async def explode(doc, ex):
            raise ValueError("flash full")

        runner = JobRunner(Jobs(c), {"blink": blink, "explode": explode})
        a = twin.call(twin.twin.add_job, "jobs-run", {"operation": "blink", "times": 2})
        b = twin.call(twin.twin.add_job, "jobs-run", {"operation": "explode"})
        d = twin.call(twin.twin.add_job, "jobs-run", {"operation": "dance"})
        task = asyncio.create_task(runner.run())
        for _ in range(100):
            if len(runner.history) == 3:
                break
            await asyncio.sleep(0.05)
        assert runner.history == [(a, "SUCCEEDED"), (b, "FAILED"), (d, "REJECTED")]
        # one more, announced by notify-next while the runner waits
        e = twin.call(twin.twin.add_job, "jobs-run", {"operation": "blink", "times": 5})
        for _ in range(100):
            if len(runner.history) == 4:
                break
            await asyncio.sleep(0.05)
        assert runner.history[-1] == (e, "SUCCEEDED")
        assert ran == [2, 5]
        runner.stop()
        await asyncio.wait_for(task, 5)
        failed = execution(twin, "jobs-run", b)
        assert failed.status == "FAILED"
        assert "flash full" in failed.status_details["error"]
        assert execution(twin, "jobs-run", a).status_details == {"blinked": "2"}
        assert "dance" in execution(twin, "jobs-run", d).status_details["reason"]
        await c.disconnect()

    run(main())


def test_runner_survives_a_reconnect_in_the_middle_of_a_job(twin):
    proxy = FaultProxy("127.0.0.1", twin.port("mtls")).start()
    try:
        async def main():
            c = device(twin, "jobs-cut")
            c.url = f"mqtts://127.0.0.1:{proxy.port}"
            await c.connect()

            async def slow(doc, ex):
                proxy.cut()  # the link drops while the job runs
                await asyncio.sleep(0.3)
                return {"done": "yes"}

            runner = JobRunner(Jobs(c, timeout_s=3), {"slow": slow})
            job = twin.call(twin.twin.add_job, "jobs-cut", {"operation": "slow"})
            assert await runner.run_once() == (job, "SUCCEEDED")
            assert proxy.connections >= 2
            assert execution(twin, "jobs-cut", job).status == "SUCCEEDED"
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()


def test_an_unreported_outcome_is_reported_not_run_again(twin):
    """The report cannot get through (here: the device's own update call fails, as when a
    link stays down past the retries): the next run_once gets the same IN_PROGRESS job
    from AWS and reports the stored outcome instead of running the handler again."""
    from mqtt_v5 import MqttError, MqttTimeout

    class FlakyJobs(Jobs):
        failures = 3

        async def update(self, *args, **kwargs):
            if self.failures:
                self.failures -= 1
                raise MqttTimeout("link down")
            return await Jobs.update(self, *args, **kwargs)

    async def main():
        c = device(twin, "jobs-down")
        await c.connect()
        runs = []

        def once(doc, ex):
            runs.append(ex["jobId"])
            return {"ran": "1"}

        runner = JobRunner(FlakyJobs(c), {"once": once})
        job = twin.call(twin.twin.add_job, "jobs-down", {"operation": "once"})
        with pytest.raises(MqttError, match="could not report SUCCEEDED"):
            await runner.run_once()
        assert execution(twin, "jobs-down", job).status == "IN_PROGRESS"
        assert await runner.run_once() == (job, "SUCCEEDED")
        assert runs == [job]                      # the handler ran once
        assert execution(twin, "jobs-down", job).status_details == {"ran": "1"}
        assert await runner.run_once() is None
        await c.disconnect()

    run(main())


def test_runner_finds_a_job_queued_while_the_session_was_lost(twin):
    proxy = FaultProxy("127.0.0.1", twin.port("mtls")).start()
    try:
        async def main():
            c = device(twin, "jobs-away", clean_start=True, session_expiry_interval=0)
            c.url = f"mqtts://127.0.0.1:{proxy.port}"
            await c.connect()
            runner = JobRunner(Jobs(c), {"noop": lambda doc, ex: None})
            task = asyncio.create_task(runner.run())
            await asyncio.sleep(0.3)                  # idle: waiting for notify-next
            proxy.refuse(True)
            proxy.cut()
            await asyncio.sleep(0.2)
            job = twin.call(twin.twin.add_job, "jobs-away", {"operation": "noop"})
            proxy.refuse(False)
            for _ in range(100):
                if runner.history:
                    break
                await asyncio.sleep(0.05)
            assert runner.history == [(job, "SUCCEEDED")]
            runner.stop()
            await asyncio.wait_for(task, 5)
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()


@pytest.mark.parametrize("bad", [0, 10081, -1, 2.5, "5", True])
def test_invalid_step_timeout_refused_before_sending(twin, bad):
    async def main():
        c = device(twin, "jobs-bad-step")
        await c.connect()
        jobs = Jobs(c)
        job = twin.call(twin.twin.add_job, "jobs-bad-step", {"operation": "x"})
        with pytest.raises(UsageError, match="stepTimeoutInMinutes"):
            await jobs.start_next(step_timeout_min=bad)
        with pytest.raises(UsageError, match="stepTimeoutInMinutes"):
            JobRunner(jobs, {}, step_timeout_min=bad)
        assert execution(twin, "jobs-bad-step", job).status == "QUEUED"  # nothing was sent
        await c.disconnect()

    run(main())


def test_step_timeout_reaches_aws_and_times_the_execution_out(twin):
    """start-next's stepTimeoutInMinutes arms AWS's step timer: the execution's deadline is
    the start plus the step timeout, and once that passes (the twin's jobs clock moved on)
    the execution is TIMED_OUT and the device's late SUCCEEDED is refused."""
    async def main():
        c = device(twin, "jobs-step")
        await c.connect()
        jobs = Jobs(c)
        job = twin.call(twin.twin.add_job, "jobs-step", {"operation": "slow"})
        ex = await jobs.start_next(step_timeout_min=7)
        assert ex["jobId"] == job
        e = execution(twin, "jobs-step", job)
        assert e.status == "IN_PROGRESS"
        assert e.step_deadline - e.started_at == 7 * 60
        store = twin.twin.services.jobs
        real = store.clock
        store.clock = lambda: real() + 7 * 60 + 1
        try:
            with pytest.raises(AwsRejected) as err:
                await jobs.update(job, "SUCCEEDED")
            assert err.value.code == "InvalidStateTransition"
            assert "TIMED_OUT" in err.value.message
            assert execution(twin, "jobs-step", job).status == "TIMED_OUT"
        finally:
            store.clock = real
        await c.disconnect()

    run(main())


def test_runner_sends_its_step_timeout_with_each_start_next(twin):
    async def main():
        c = device(twin, "jobs-run-step")
        await c.connect()
        seen = []

        def work(doc, ex):
            e = execution(twin, "jobs-run-step", ex["jobId"])
            seen.append(e.step_deadline - e.started_at)

        runner = JobRunner(Jobs(c), {"work": work}, step_timeout_min=3)
        twin.call(twin.twin.add_job, "jobs-run-step", {"operation": "work"})
        twin.call(twin.twin.add_job, "jobs-run-step", {"operation": "work"})
        while await runner.run_once() is not None:
            pass
        assert seen == [180, 180]
        assert [s for _, s in runner.history] == ["SUCCEEDED", "SUCCEEDED"]
        await c.disconnect()

    run(main())
