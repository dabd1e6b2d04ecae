"""shardpay.serve.committer: the engine thread groups what queued while it was busy, runs calls in
order between groups, and after a failure answers everything in doubt and reports the error once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shardpay.serve.batches import Outcome, prepare
from shardpay.serve.committer import IN_DOUBT, Committer

HEADER = b"type,client,tx,amount\n"


class FakeBook:
    """Records each group; the first commit waits until released, so that more can queue."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.fail_at = fail_at

    def commit(self, group):
        if not self.groups:
            self.release.wait(5)
        self.groups.append([p.batch_id for p in group])
        if self.fail_at is not None and len(self.groups) > self.fail_at:
            raise RuntimeError("the engine died")
        return [Outcome("ok") for _ in group]


def run(book: FakeBook, body) -> tuple[list, list[BaseException]]:
    failures: list[BaseException] = []

    async def scenario():
        committer = Committer(book, asyncio.get_running_loop(), failures.append)  # type: ignore[arg-type]
        committer.start()
        try:
            return await body(committer)
        finally:
            committer.stop()
            committer.join(5)

    return asyncio.run(scenario()), failures


def pending(i: int):
    return prepare(f"b{i}", HEADER + b"deposit,1,%d,1\n" % i, "-@h")


def test_what_queues_while_a_group_commits_is_the_next_group():
    book = FakeBook()

    async def body(committer):
        first = committer.submit(pending(0))
        await asyncio.sleep(0.05)  # the thread is in the first commit now
        rest = [committer.submit(pending(i)) for i in range(1, 6)]
        called = committer.call(lambda: "between")
        after = committer.submit(pending(6))
        book.release.set()
        outcomes = await asyncio.gather(first, *rest, after)
        return outcomes, await called, committer.in_flight

    (outcomes, called, in_flight), failures = run(book, body)
    assert book.groups == [["b0"], ["b1", "b2", "b3", "b4", "b5"], ["b6"]]
    assert [o.status for o in outcomes] == ["ok"] * 7 and called == "between" and in_flight == 0
    assert failures == []


def test_a_failure_leaves_the_group_and_all_after_it_in_doubt():
    book = FakeBook(fail_at=1)
    book.release.set()

    async def body(committer):
        assert (await committer.submit(pending(0))).status == "ok"
        failed = await committer.submit(pending(1))
        later = await committer.submit(pending(2))
        with pytest.raises(RuntimeError, match="the engine died"):
            await committer.call(lambda: "too late")
        return failed, later

    (failed, later), failures = run(book, body)
    assert failed is IN_DOUBT and later is IN_DOUBT
    assert [str(f) for f in failures] == ["the engine died"]
    assert book.groups == [["b0"], ["b1"]]  # nothing committed after the failure
