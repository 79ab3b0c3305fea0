"""agent.executor's Worker: one thread, jobs in order, and nothing waits for ever once it has stopped."""

from __future__ import annotations

import threading

import pytest

from agent.executor import Worker, WorkerStopped


async def test_jobs_run_in_order_on_one_thread_and_errors_come_back() -> None:
    worker = Worker(thread_name="test-worker")
    await worker.start()
    try:
        names = [await worker.submit(lambda: threading.current_thread().name) for _ in range(3)]
        assert names == ["test-worker"] * 3
        with pytest.raises(ZeroDivisionError):
            await worker.submit(lambda: 1 // 0)
    finally:
        await worker.stop()


async def test_a_job_submitted_after_stop_fails_at_once_instead_of_waiting_for_ever() -> None:
    worker = Worker()
    await worker.start()
    await worker.stop()
    with pytest.raises(WorkerStopped, match="stopped"):
        await worker.submit(lambda: 1)
    await worker.stop()  # a second stop is harmless
