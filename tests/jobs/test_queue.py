"""The PostgreSQL job queue against a real, freshly migrated database."""

import asyncio
import collections
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botter.db.schema import jobs
from botter.jobs.queue import (
    BACKOFF_MAX_S,
    MAX_ATTEMPTS,
    GiveUp,
    Job,
    JobHandler,
    JobRunner,
    RetryLater,
    backoff_s,
    enqueue,
)


async def add_job(
    engine: AsyncEngine, kind: str, args: dict[str, Any] | None = None, **kw: Any
) -> int:
    async with engine.begin() as conn:
        assert await enqueue(conn, kind, args or {}, **kw)
        found = await conn.execute(
            select(jobs.c.id).where(jobs.c.kind == kind).order_by(jobs.c.id.desc()).limit(1)
        )
        return int(found.scalar_one())


async def job_row(engine: AsyncEngine, job_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one()


async def effects(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT job_id, note FROM job_effects ORDER BY job_id"))
        return [(row.job_id, row.note) for row in rows]


async def db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return now


async def make_due(engine: AsyncEngine, job_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(run_at=text("now()")))


async def leave_effect(conn: AsyncConnection, job: Job, note: str = "ran") -> None:
    await conn.execute(
        text("INSERT INTO job_effects (job_id, note) VALUES (:job_id, :note)"),
        {"job_id": job.id, "note": note},
    )


def failing_with(error: BaseException) -> JobHandler:
    async def handler(conn: AsyncConnection, job: Job) -> None:
        await leave_effect(conn, job, "must be rolled back")
        raise error

    return handler


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(attempts) for attempts in range(0, 6)] == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff_s(9) == 256.0
    assert backoff_s(10) == BACKOFF_MAX_S
    assert backoff_s(1000) == BACKOFF_MAX_S


async def test_enqueue_in_a_rolled_back_transaction_leaves_no_job(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        assert await enqueue(conn, "rolled_back", {"n": 1})
        await transaction.rollback()
    async with engine.begin() as conn:
        assert await enqueue(conn, "committed", {"n": 2})

    async with engine.connect() as conn:
        kinds = (await conn.execute(select(jobs.c.kind))).scalars().all()
    assert kinds == ["committed"]


async def test_enqueue_stores_what_it_was_given(engine: AsyncEngine) -> None:
    run_at = await db_now(engine) + timedelta(hours=1)
    job_id = await add_job(
        engine, "stored", {"a": [1, "x"]}, creator_id=None, run_at=run_at, priority=0
    )

    row = await job_row(engine, job_id)
    assert (row.kind, row.args, row.priority, row.status) == (
        "stored",
        {"a": [1, "x"]},
        0,
        "queued",
    )
    assert (row.attempts, row.run_at, row.dedupe_key, row.last_error) == (0, run_at, None, None)


async def test_a_dedupe_key_is_used_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await enqueue(conn, "dedupe", {"first": True}, dedupe_key="remind:1:2")
        assert not await enqueue(conn, "dedupe", {"first": False}, dedupe_key="remind:1:2")
    async with engine.begin() as conn:
        assert not await enqueue(conn, "dedupe", {"first": False}, dedupe_key="remind:1:2")
        assert await enqueue(conn, "dedupe", {"first": False}, dedupe_key="remind:1:3")
        # Without a key nothing is deduplicated.
        assert await enqueue(conn, "dedupe", {})
        assert await enqueue(conn, "dedupe", {})

    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(jobs.c.dedupe_key, jobs.c.args).order_by(jobs.c.id))
        ).all()
    assert [tuple(row) for row in rows] == [
        ("remind:1:2", {"first": True}),
        ("remind:1:3", {"first": False}),
        (None, {}),
        (None, {}),
    ]


async def test_a_dedupe_key_stays_used_after_the_job_ran(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await enqueue(conn, "once", {}, dedupe_key="once:1")
    runner = JobRunner(engine, {"once": leave_effect})
    assert await runner.run_one()

    async with engine.begin() as conn:
        assert not await enqueue(conn, "once", {}, dedupe_key="once:1")
    assert not await runner.run_one()
    assert len(await effects(engine)) == 1


async def test_run_one_with_nothing_due(engine: AsyncEngine) -> None:
    assert not await JobRunner(engine, {}).run_one()


async def test_run_one_runs_a_due_job_and_marks_it_done(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "greet", {"user_id": 7})
    seen: list[Job] = []

    async def handler(conn: AsyncConnection, job: Job) -> None:
        seen.append(job)
        await leave_effect(conn, job)

    assert await JobRunner(engine, {"greet": handler}).run_one()

    assert seen == [Job(job_id, "greet", {"user_id": 7}, 1, None)]
    row = await job_row(engine, job_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    assert row.finished_at is not None
    assert await effects(engine) == [(job_id, "ran")]
    assert not await JobRunner(engine, {"greet": handler}).run_one()
    assert len(seen) == 1


async def test_the_handlers_effects_commit_together_with_the_done_mark(
    engine: AsyncEngine,
) -> None:
    job_id = await add_job(engine, "slow")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def handler(conn: AsyncConnection, job: Job) -> None:
        await leave_effect(conn, job)
        inside.set()
        await release.wait()

    running = asyncio.create_task(JobRunner(engine, {"slow": handler}).run_one())
    await asyncio.wait_for(inside.wait(), 10)

    # Mid-job, another connection sees neither the effect nor a finished job.
    assert await effects(engine) == []
    assert (await job_row(engine, job_id)).status == "queued"
    release.set()
    assert await asyncio.wait_for(running, 10)

    assert await effects(engine) == [(job_id, "ran")]
    assert (await job_row(engine, job_id)).status == "done"


async def test_a_claimed_job_is_invisible_to_other_runners(engine: AsyncEngine) -> None:
    await add_job(engine, "held")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def handler(conn: AsyncConnection, job: Job) -> None:
        inside.set()
        await release.wait()

    running = asyncio.create_task(JobRunner(engine, {"held": handler}).run_one())
    await asyncio.wait_for(inside.wait(), 10)

    # SKIP LOCKED: the second runner neither waits for nor takes the held job.
    assert not await asyncio.wait_for(JobRunner(engine, {"held": handler}).run_one(), 5)
    release.set()
    assert await asyncio.wait_for(running, 10)


async def test_a_failing_handler_is_rolled_back_counted_and_backed_off(
    engine: AsyncEngine,
) -> None:
    job_id = await add_job(engine, "flaky")
    runner = JobRunner(engine, {"flaky": failing_with(ValueError("boom"))})

    for attempt in (1, 2, 3):
        before = await db_now(engine)
        assert await runner.run_one()
        after = await db_now(engine)

        row = await job_row(engine, job_id)
        assert (row.status, row.attempts) == ("queued", attempt)
        assert row.last_error == "ValueError: boom"
        assert row.finished_at is None
        delay = timedelta(seconds=backoff_s(attempt))
        assert before + delay <= row.run_at + timedelta(milliseconds=50)
        assert row.run_at <= after + delay
        assert not await runner.run_one()  # not due until the backoff has passed
        await make_due(engine, job_id)

    assert await effects(engine) == []


async def test_a_database_error_in_the_handler_is_rolled_back_and_retried(
    engine: AsyncEngine,
) -> None:
    job_id = await add_job(engine, "bad_sql")

    async def handler(conn: AsyncConnection, job: Job) -> None:
        await leave_effect(conn, job, "must be rolled back")
        await conn.execute(text("SELECT 1 / 0"))

    assert await JobRunner(engine, {"bad_sql": handler}).run_one()

    row = await job_row(engine, job_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error.startswith("DataError: ")
    assert "division by zero" in row.last_error
    assert await effects(engine) == []


async def test_a_job_failing_its_last_attempt_is_dead(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "doomed")
    async with engine.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == job_id).values(attempts=MAX_ATTEMPTS - 1)
        )

    assert await JobRunner(engine, {"doomed": failing_with(RuntimeError("still down"))}).run_one()

    row = await job_row(engine, job_id)
    assert (row.status, row.attempts) == ("dead", MAX_ATTEMPTS)
    assert row.last_error == "RuntimeError: still down"
    assert row.finished_at is not None
    assert await effects(engine) == []


async def test_a_long_error_is_cut_to_500_characters(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "verbose")

    assert await JobRunner(engine, {"verbose": failing_with(ValueError("x" * 5000))}).run_one()

    assert len((await job_row(engine, job_id)).last_error) == 500


async def test_retry_later_reschedules_without_counting_an_attempt(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "patient")
    runner = JobRunner(engine, {"patient": failing_with(RetryLater(30, "chat is slow-mode"))})

    for _ in range(3):
        before = await db_now(engine)
        assert await runner.run_one()
        after = await db_now(engine)

        row = await job_row(engine, job_id)
        assert (row.status, row.attempts, row.last_error) == ("queued", 0, "chat is slow-mode")
        assert before + timedelta(seconds=29.9) <= row.run_at <= after + timedelta(seconds=30)
        assert not await runner.run_one()
        await make_due(engine, job_id)

    assert await effects(engine) == []


async def test_give_up_is_dead_at_once(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "hopeless")

    assert await JobRunner(engine, {"hopeless": failing_with(GiveUp("chat not found"))}).run_one()

    row = await job_row(engine, job_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "chat not found")
    assert row.finished_at is not None
    assert await effects(engine) == []
    assert not await JobRunner(engine, {"hopeless": leave_effect}).run_one()


async def test_an_unknown_kind_is_dead(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "nobody_handles_this")

    assert await JobRunner(engine, {"something_else": leave_effect}).run_one()

    row = await job_row(engine, job_id)
    assert row.status == "dead"
    assert row.last_error == "no handler for job kind nobody_handles_this"
    assert await effects(engine) == []


async def test_a_job_for_later_is_not_run_yet(engine: AsyncEngine) -> None:
    later = await db_now(engine) + timedelta(minutes=5)
    job_id = await add_job(engine, "later", run_at=later)
    runner = JobRunner(engine, {"later": leave_effect})

    assert not await runner.run_one()
    assert (await job_row(engine, job_id)).status == "queued"
    assert await effects(engine) == []

    await make_due(engine, job_id)
    assert await runner.run_one()
    assert await effects(engine) == [(job_id, "ran")]


async def test_priority_0_runs_before_1_then_oldest_first(engine: AsyncEngine) -> None:
    now = await db_now(engine)
    normal_old = await add_job(engine, "order", {"n": 1}, run_at=now - timedelta(minutes=2))
    normal_new = await add_job(engine, "order", {"n": 2}, run_at=now - timedelta(minutes=1))
    urgent = await add_job(engine, "order", {"n": 3}, priority=0)
    urgent_later = await add_job(engine, "order", {"n": 4}, priority=0)
    order: list[int] = []

    async def handler(conn: AsyncConnection, job: Job) -> None:
        order.append(job.id)

    runner = JobRunner(engine, {"order": handler})
    while await runner.run_one():
        pass

    assert order == [urgent, urgent_later, normal_old, normal_new]


async def test_p6_concurrent_runners_never_run_the_same_job_twice(engine: AsyncEngine) -> None:
    count = 50
    async with engine.begin() as conn:
        for n in range(count):
            assert await enqueue(conn, "race", {"n": n})
    ran: collections.Counter[int] = collections.Counter()
    by_runner: collections.Counter[str] = collections.Counter()

    def handler_for(name: str) -> JobHandler:
        async def handler(conn: AsyncConnection, job: Job) -> None:
            ran[job.args["n"]] += 1
            by_runner[name] += 1
            await leave_effect(conn, job, name)
            await asyncio.sleep(random.uniform(0, 0.01))

        return handler

    async def drain(name: str) -> None:
        runner = JobRunner(engine, {"race": handler_for(name)})
        while await runner.run_one():
            pass

    await asyncio.wait_for(asyncio.gather(*(drain(f"runner{i}") for i in range(4))), 60)

    assert ran == dict.fromkeys(range(count), 1)
    recorded = await effects(engine)
    assert len(recorded) == count
    assert len({job_id for job_id, _ in recorded}) == count
    assert len(by_runner) > 1, by_runner  # the runners really ran side by side
    async with engine.connect() as conn:
        statuses = (await conn.execute(select(jobs.c.status, jobs.c.attempts))).all()
    assert {tuple(row) for row in statuses} == {("done", 1)}


async def test_the_run_loop_picks_up_jobs_and_stops(engine: AsyncEngine) -> None:
    done = asyncio.Event()
    ran: list[int] = []

    async def handler(conn: AsyncConnection, job: Job) -> None:
        ran.append(job.args["n"])
        if len(ran) == 5:
            done.set()

    runner = JobRunner(engine, {"loop": handler}, concurrency=2, poll_interval_s=0.05)
    loop = asyncio.create_task(runner.run())
    for n in range(5):
        await add_job(engine, "loop", {"n": n})
        runner.wakeup.set()

    await asyncio.wait_for(done.wait(), 10)
    runner.stop()
    await asyncio.wait_for(loop, 10)

    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert not await JobRunner(engine, {"loop": handler}).run_one()


async def test_stop_lets_a_job_in_flight_finish(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "in_flight")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def handler(conn: AsyncConnection, job: Job) -> None:
        inside.set()
        await release.wait()
        await leave_effect(conn, job)

    runner = JobRunner(engine, {"in_flight": handler}, concurrency=2, poll_interval_s=30)
    loop = asyncio.create_task(runner.run())
    await asyncio.wait_for(inside.wait(), 10)
    runner.stop()
    await asyncio.sleep(0.05)
    assert not loop.done()
    release.set()
    await asyncio.wait_for(loop, 5)  # idle consumers do not sit out their 30 s poll

    assert (await job_row(engine, job_id)).status == "done"
    assert await effects(engine) == [(job_id, "ran")]


async def test_stop_gives_up_on_a_stuck_job_which_stays_queued(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "stuck")
    inside = asyncio.Event()

    async def handler(conn: AsyncConnection, job: Job) -> None:
        await leave_effect(conn, job)
        inside.set()
        await asyncio.Event().wait()

    runner = JobRunner(engine, {"stuck": handler}, stop_timeout_s=0.2)
    loop = asyncio.create_task(runner.run())
    await asyncio.wait_for(inside.wait(), 10)
    runner.stop()
    await asyncio.wait_for(loop, 5)

    row = await job_row(engine, job_id)
    assert (row.status, row.attempts) == ("queued", 0)
    assert await effects(engine) == []
