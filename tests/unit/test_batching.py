"""The batch queue and the runner, with a fake model behind the real interface."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

import numpy as np
import pytest

from inferq.errors import InferenceFailed
from worker.engine.batching import BatchQueue, QueueClosed
from worker.engine.runner import BatchRunner, bucket_for, bucket_sizes_for

NEVER_S = 3600.0  # a max wait so long that only a full batch can flush


class FakeModel:
    """Doubles its input; records batch shapes; can be told to fail or misbehave."""

    name = "fake"
    version = "0"

    def __init__(
        self, max_rows: int, fail: bool = False, drop_one: bool = False, fail_times: int = 0
    ) -> None:
        self.bucket_sizes = bucket_sizes_for(max_rows)
        self.fail = fail
        self.fail_times = fail_times
        self.drop_one = drop_one
        self.shapes: list[tuple[int, ...]] = []
        self.gate = threading.Event()
        self.gate.set()

    def forward(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(10)
        self.shapes.append(batch.shape)
        if self.fail or self.fail_times:
            self.fail_times = max(self.fail_times - 1, 0)
            raise RuntimeError("device lost")
        out = batch * 2
        return out[:-1] if self.drop_one else out


def test_bucket_sizes() -> None:
    assert bucket_sizes_for(64) == (1, 2, 4, 8, 16, 32, 64)
    assert bucket_sizes_for(48) == (1, 2, 4, 8, 16, 32, 48)
    assert bucket_sizes_for(1) == (1,)
    assert [bucket_for(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError, match="exceed"):
        bucket_for(9, (1, 2, 4, 8))


def test_queue_flushes_when_full_without_waiting() -> None:
    q: BatchQueue[str, str] = BatchQueue(max_rows=4, max_wait_s=NEVER_S)
    for name in "abcde":
        q.put(name, rows=1)
    batch = q.next_batch(idle_timeout_s=5)
    assert [p.payload for p in batch] == ["a", "b", "c", "d"]
    assert len(q) == 1


def test_queue_flushes_after_max_wait_from_first_item() -> None:
    q: BatchQueue[str, str] = BatchQueue(max_rows=100, max_wait_s=0.05)
    q.put("a", rows=1)
    started = time.monotonic()
    batch = q.next_batch(idle_timeout_s=5)
    assert [p.payload for p in batch] == ["a"]
    assert 0.04 <= time.monotonic() - started < 1.0


def test_wait_counts_from_the_first_item_not_from_the_call() -> None:
    clock = [100.0]
    q: BatchQueue[str, str] = BatchQueue(max_rows=100, max_wait_s=0.5, clock=lambda: clock[0])
    q.put("a", rows=1)
    clock[0] += 0.6  # the first item has waited longer than max_wait already
    assert [p.payload for p in q.next_batch(idle_timeout_s=5)] == ["a"]


def test_items_are_never_split_and_never_exceed_max_rows() -> None:
    q: BatchQueue[str, str] = BatchQueue(max_rows=5, max_wait_s=NEVER_S)
    q.put("three", rows=3)
    q.put("two", rows=2)
    q.put("four", rows=4)
    assert [p.payload for p in q.next_batch(5)] == ["three", "two"]
    q.close()
    assert [p.payload for p in q.next_batch(5)] == ["four"]
    with pytest.raises(ValueError, match=r"1\.\.5 rows"):
        BatchQueue[str, str](max_rows=5, max_wait_s=0).put("six", rows=6)


def test_closed_queue_refuses_items_and_drains() -> None:
    q: BatchQueue[str, str] = BatchQueue(max_rows=2, max_wait_s=NEVER_S)
    q.put("a", rows=1)
    q.close()
    with pytest.raises(QueueClosed):
        q.put("b", rows=1)
    assert [p.payload for p in q.next_batch(1)] == ["a"]
    assert q.next_batch(1) == []


def test_idle_timeout_returns_empty() -> None:
    q: BatchQueue[str, str] = BatchQueue(max_rows=2, max_wait_s=0)
    assert q.next_batch(idle_timeout_s=0.01) == []


def test_runner_n_in_n_out_in_order_across_many_threads() -> None:
    model = FakeModel(max_rows=8)
    runner = BatchRunner(model, max_batch_rows=8, max_wait_s=0.01).start()
    try:
        inputs = [np.full((1 + i % 3, 2), float(i), np.float32) for i in range(60)]
        with ThreadPoolExecutor(16) as pool:
            outputs = list(pool.map(lambda x: runner.infer(x, timeout_s=10)[0], inputs))
    finally:
        runner.stop()
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert all(shape[0] in model.bucket_sizes for shape in model.shapes)
    assert sum(1 for _ in model.shapes) < 60  # jobs shared forward passes


def test_runner_pads_to_a_bucket_and_reports_the_batch() -> None:
    model = FakeModel(max_rows=8)
    model.gate.clear()  # hold the model so both jobs land in one batch
    runner = BatchRunner(model, max_batch_rows=8, max_wait_s=0.2).start()
    try:
        first = runner.submit(np.ones((2, 3), np.float32))
        second = runner.submit(np.ones((3, 3), np.float32))
        model.gate.set()
        a, b = first[0].result(10), second[0].result(10)
    finally:
        runner.stop()
    assert model.shapes == [(8, 3)]
    assert (a.batch_rows, a.padded_rows, a.batch_jobs) == (5, 8, 2)
    assert a.batch_id == b.batch_id
    assert a.values.shape == (2, 3) and b.values.shape == (3, 3)


def test_a_job_larger_than_max_batch_is_split_and_rejoined() -> None:
    model = FakeModel(max_rows=4)
    runner = BatchRunner(model, max_batch_rows=4, max_wait_s=0.0).start()
    try:
        x = np.arange(22, dtype=np.float32).reshape(11, 2)
        y, parts = runner.infer(x, timeout_s=10)
    finally:
        runner.stop()
    np.testing.assert_array_equal(y, x * 2)
    assert [p.values.shape[0] for p in parts] == [4, 4, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"fail": True}, "device lost"), ({"drop_one": True}, "outputs for")]
)
def test_a_failing_batch_fails_every_job_in_it_and_the_runner_lives_on(
    kwargs: dict[str, bool], message: str
) -> None:
    model = FakeModel(max_rows=4, **kwargs)
    model.gate.clear()
    runner = BatchRunner(model, max_batch_rows=4, max_wait_s=0.2).start()
    try:
        futures = [runner.submit(np.ones((1, 2), np.float32))[0] for _ in range(3)]
        model.gate.set()
        for f in futures:
            with pytest.raises(InferenceFailed, match=message):
                f.result(10)
        model.fail = model.drop_one = False
        y, _ = runner.infer(np.ones((1, 2), np.float32), timeout_s=10)
        np.testing.assert_array_equal(y, [[2.0, 2.0]])
    finally:
        runner.stop()


def test_a_transient_failure_is_retried_and_each_job_answered_once() -> None:
    model = FakeModel(max_rows=4, fail_times=2)
    model.gate.clear()
    runner = BatchRunner(model, max_batch_rows=4, max_wait_s=NEVER_S, retries=2, backoff_s=0.001)
    futures = [runner.submit(np.full((1, 1), i, np.float32))[0] for i in range(4)]
    runner.start()
    model.gate.set()
    try:
        assert [f.result(10).values.item() for f in futures] == [0.0, 2.0, 4.0, 6.0]
        assert len(model.shapes) == 3  # two failures, then the pass that worked
    finally:
        runner.stop()


def test_retries_are_bounded_then_a_typed_error() -> None:
    model = FakeModel(max_rows=2, fail=True)
    runner = BatchRunner(model, max_batch_rows=2, max_wait_s=0.0, retries=3, backoff_s=0.001)
    runner.start()
    try:
        with pytest.raises(InferenceFailed, match=r"device lost \(after 4 attempts\)"):
            runner.infer(np.ones((2, 1), np.float32), timeout_s=10)
        assert len(model.shapes) == 4
    finally:
        runner.stop()


def test_stop_runs_what_is_queued_then_refuses() -> None:
    model = FakeModel(max_rows=4)
    model.gate.clear()
    runner = BatchRunner(model, max_batch_rows=4, max_wait_s=NEVER_S).start()
    futures = [runner.submit(np.ones((1, 1), np.float32))[0] for _ in range(2)]
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    model.gate.set()
    stopper.join(10)
    assert [f.result(1).values.tolist() for f in futures] == [[[2.0]], [[2.0]]]
    with pytest.raises(InferenceFailed, match="shutting down"):
        runner.submit(np.ones((1, 1), np.float32))


# Two lanes: stream jobs before bulk rows, bulk never starved.


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def _lanes(clock: Clock, max_wait_s: float = NEVER_S) -> BatchQueue[str, str]:
    return BatchQueue(4, max_wait_s, clock, bulk_max_rows=100, bulk_max_delay_s=0.05)


def test_stream_items_go_ahead_of_bulk_rows_queued_before_them() -> None:
    q = _lanes(Clock())
    q.put("chunk-a", rows=100, bulk=True)
    q.put("chunk-b", rows=60, bulk=True)
    q.put("job", rows=1)
    assert [p.payload for p in q.next_batch(0)] == ["job"]
    assert [p.payload for p in q.next_batch(0)] == ["chunk-a"]
    assert [p.payload for p in q.next_batch(0)] == ["chunk-b"]


def test_with_bulk_rows_waiting_a_stream_batch_does_not_wait_to_fill() -> None:
    clock = Clock()
    q = _lanes(clock)
    q.put("job", rows=1)
    q.put("chunk", rows=100, bulk=True)
    # The clock stands still and max wait is an hour: only the bulk rows release it.
    assert [p.payload for p in q.next_batch(0)] == ["job"]


def test_without_bulk_rows_a_stream_batch_waits_its_max_wait() -> None:
    q: BatchQueue[str, str] = BatchQueue(4, 0.05, bulk_max_rows=100)
    q.put("job", rows=1)
    started = time.monotonic()
    assert [p.payload for p in q.next_batch(5)] == ["job"]
    assert 0.04 <= time.monotonic() - started < 1.0


def test_bulk_rows_arriving_end_a_stream_batchs_wait() -> None:
    # A clock that stands still: on a loaded machine the consumer thread may start after
    # bulk's own delay has run out, and then the chunk would rightly go first.
    q = _lanes(Clock())
    q.put("job", rows=1)
    taken: list[list[str]] = []
    consumer = threading.Thread(target=lambda: taken.append([p.payload for p in q.next_batch(5)]))
    consumer.start()
    q.put("chunk", rows=10, bulk=True)
    consumer.join(5)
    assert taken == [["job"]]


def test_bulk_gets_a_pass_every_max_delay_under_a_constant_stream() -> None:
    step_s = 1 / 64  # exact in binary: the clock's sums stay exact
    clock = Clock()
    q: BatchQueue[str, str] = BatchQueue(
        1, NEVER_S, clock, bulk_max_rows=100, bulk_max_delay_s=4 * step_s
    )
    q.put("chunk-1", rows=100, bulk=True)
    q.put("chunk-2", rows=100, bulk=True)
    order: list[str] = []
    for i in range(12):  # a new stream job before every pass, one step apart
        q.put(f"job-{i}", rows=1)
        order.extend(p.payload for p in q.next_batch(0))
        clock.now_s += step_s
    bulk_at = [i for i, name in enumerate(order) if name.startswith("chunk")]
    assert [order[i] for i in bulk_at] == ["chunk-1", "chunk-2"]
    # Due four steps after chunk-1 came, then four steps after its pass: never later.
    assert bulk_at == [4, 8]
    assert order[:4] == ["job-0", "job-1", "job-2", "job-3"]


def test_lanes_cut_at_their_own_sizes_and_never_split_an_item() -> None:
    q = _lanes(Clock())
    for name in ("a", "b", "c"):
        q.put(name, rows=40, bulk=True)
    for name in ("x", "y", "z"):
        q.put(name, rows=2, bulk=False)
    assert [p.payload for p in q.next_batch(0)] == ["x", "y"]
    assert [p.payload for p in q.next_batch(0)] == ["z"]
    assert [p.payload for p in q.next_batch(0)] == ["a", "b"]
    assert [p.payload for p in q.next_batch(0)] == ["c"]
    with pytest.raises(ValueError, match=r"1\.\.100 rows"):
        q.put("too big", rows=101, bulk=True)
    with pytest.raises(ValueError, match=r"1\.\.4 rows"):
        q.put("too big", rows=5)


def test_closed_queue_drains_both_lanes() -> None:
    q = _lanes(Clock())
    q.put("chunk", rows=10, bulk=True)
    q.put("job", rows=1)
    q.close()
    assert [p.payload for p in q.next_batch(0)] == ["job"]
    assert [p.payload for p in q.next_batch(0)] == ["chunk"]
    assert q.next_batch(0) == [] and len(q) == 0


def test_runner_a_stream_job_waits_for_the_bulk_pass_in_progress_only() -> None:
    model = FakeModel(max_rows=16)
    model.gate.clear()  # the first bulk pass is running and held
    runner = BatchRunner(
        model, max_batch_rows=2, max_wait_s=NEVER_S, bulk_batch_rows=16, bulk_max_delay_s=NEVER_S
    ).start()
    try:
        chunk = runner.submit(np.ones((64, 1), np.float32), bulk=True)  # four bulk passes
        deadline = time.monotonic() + 10
        while runner.queue.__len__() > 3 and time.monotonic() < deadline:
            time.sleep(0.001)  # poll: until the runner holds the first pass
        job = runner.submit(np.full((1, 1), 7.0, np.float32))
        model.gate.set()
        assert job[0].result(10).values.tolist() == [[14.0]]
        outputs = runner.wait(chunk, timeout_s=10)
    finally:
        runner.stop()
    assert model.shapes == [(16, 1), (1, 1), (16, 1), (16, 1), (16, 1)]
    assert [len(p.values) for p in outputs] == [16, 16, 16, 16]


def test_flush_stream_lets_the_waiting_batch_go_and_only_that_one() -> None:
    # A clock that stands still: only a flush (or a full batch) can end a wait here.
    q: BatchQueue[str, str] = BatchQueue(max_rows=8, max_wait_s=NEVER_S, clock=lambda: 0.0)
    q.flush_stream()  # nothing waits: a no-op, not a flag left for the next batch
    with ThreadPoolExecutor(1) as pool:
        for names in ("a", "bc", "d"):
            for name in names:
                q.put(name, rows=1)
            waiting = pool.submit(q.next_batch, 5)
            with pytest.raises(FuturesTimeout):  # no earlier flush lets this batch go
                waiting.result(timeout=0.2)
            q.flush_stream()
            assert [p.payload for p in waiting.result(timeout=5)] == list(names)
