"""The direct path and the finisher in one process: a real regressor, a real Redis
result backend, and requests that are small fakes of Celery's Request (the consumer
in front of them is Celery's own, run end to end by every worker test)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from celery import Celery
from celery.app.task import Context
from celery.worker.state import task_accepted

from inferq.core.constants import COURSE_FEATURES, PREDICT_TASK
from inferq.core.contract import PredictResult
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from tests.support.delivery import rows
from worker.celeryapp.direct import DirectPredict
from worker.celeryapp.finisher import Finisher, HeldJob
from worker.celeryapp.state import WorkerState
from worker.engine.runner import BatchOutput
from worker.loading.registry import ServedRegressor

MAX_BATCH = 8
ROWS = rows(MAX_BATCH + 14)  # generated games, enough for every test here


class FakeRequest:
    """What DirectPredict and the finisher use of celery.worker.request.Request."""

    def __init__(
        self, backend: Any, *, args: Any = (), kwargs: Any = None, embed: Any = None
    ) -> None:
        self.id, self.name = str(uuid.uuid4()), PREDICT_TASK
        self.args, self.kwargs = list(args), dict(kwargs or {})
        # Celery's decoded body: (args, kwargs, embed), embed holding the canvas options.
        self._payload = (self.args, self.kwargs, embed or {})
        self.time_limits: Any = (None, None)
        self.task = SimpleNamespace(backend=backend)
        self.chord, self.ignore_result, self.eventer = None, False, None
        self._context = Context({"id": self.id})
        self.events: list[str] = []
        self.acks: list[str] = []  # the stored state at each ack
        self.rejects: list[bool] = []
        self.acknowledged = False
        self.done = threading.Event()

    def send_event(self, type: str, **_: Any) -> None:
        self.events.append(type)

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        task_accepted(self)  # as Request.on_accepted does, with the task-started event
        self.send_event("task-started")

    def acknowledge(self) -> None:
        self.acks.append(self.task.backend.get_task_meta(self.id)["status"])
        self.acknowledged = True
        self.done.set()

    def reject(self, requeue: bool = False) -> None:
        self.rejects.append(requeue)
        self.done.set()


def _app(url: str, **conf: Any) -> Celery:
    app = Celery("test-direct", broker=url, backend=url, set_as_current=False)
    app.conf.update(result_serializer="json", accept_content=["json"], **conf)
    return app


@pytest.fixture()
def backend(redis_server: RedisServer) -> Iterator[Any]:
    app = _app(redis_server.url)
    yield app.backend
    app.close()


@pytest.fixture(scope="module")
def settings(regressor_path: Path) -> Settings:
    return Settings.load(
        {
            "INFERQ_REGRESSOR_PATH": str(regressor_path),
            "INFERQ_MAX_BATCH_SIZE": str(MAX_BATCH),
            "INFERQ_MAX_WAIT_MS": "50",
        }
    )


@pytest.fixture(scope="module")
def state(settings: Settings) -> Iterator[WorkerState]:
    """A worker process's state with the regressor loaded, as after worker_init."""
    state = WorkerState.build(settings, {"regressor"})
    state.models.load({"regressor"})
    yield state
    state.models.unload()


@pytest.fixture()
def served(state: WorkerState) -> ServedRegressor:
    return state.models.regressor()


@pytest.fixture()
def direct(state: WorkerState) -> tuple[DirectPredict, list[Any]]:
    to_pool: list[Any] = []
    return DirectPredict(state, to_pool.append), to_pool


def _answered(requests: list[FakeRequest], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    for req in requests:
        assert req.done.wait(max(0.0, deadline - time.monotonic())), f"{req.id} unanswered"


def test_small_jobs_share_forward_passes_and_are_acked_after_their_result_is_stored(
    direct: tuple[DirectPredict, list[Any]], backend: Any, served: ServedRegressor
) -> None:
    handler, to_pool = direct
    requests = [FakeRequest(backend, kwargs={"rows": ROWS[i]}) for i in range(20)]
    requests.append(FakeRequest(backend, args=[[ROWS[20], ROWS[21]]]))  # positional, 2 rows
    for req in requests:
        handler(req)
    _answered(requests)
    assert to_pool == []
    metas = [backend.get_task_meta(r.id) for r in requests]
    results = [PredictResult.model_validate(meta["result"]) for meta in metas]
    assert all(r.acks == ["SUCCESS"] and r.rejects == [] for r in requests)
    assert all(r.events == ["task-started"] for r in requests)  # eventer off: none sent after
    assert max(r.batch.jobs for r in results) > 1
    # The same dollars as the pool path's forward pass of the same rows.
    x = served.meta.scale_features(np.array([[r[f] for f in COURSE_FEATURES] for r in ROWS]))
    expected, _ = served.runner.infer(x.astype(np.float32), timeout_s=30)
    got = [v for r in results for v in r.earnings_usd]
    np.testing.assert_allclose(got, served.meta.to_dollars(expected), rtol=1e-5)


def test_big_jobs_and_a_process_without_the_model_take_the_pool_path(
    direct: tuple[DirectPredict, list[Any]], backend: Any, settings: Settings
) -> None:
    handler, to_pool = direct
    big = FakeRequest(backend, kwargs={"rows": ROWS[: MAX_BATCH + 1]})
    handler(big)
    parent = WorkerState.build(settings, {"regressor"})  # a prefork parent holds no model
    small = FakeRequest(backend, kwargs={"rows": ROWS[0]})
    DirectPredict(parent, to_pool.append)(small)
    assert to_pool == [big, small]
    assert big.acks == small.acks == [] and big.events == small.events == []


@pytest.mark.parametrize(
    "embed",
    [
        {"callbacks": [{"task": "next", "args": [], "kwargs": {}, "options": {}}]},
        {"errbacks": [{"task": "on_error", "args": [], "kwargs": {}, "options": {}}]},
        {"chain": [{"task": "next", "args": [], "kwargs": {}, "options": {}}]},
        {"chord": {"task": "body", "args": [], "kwargs": {}, "options": {}}},
    ],
)
def test_a_job_carrying_canvas_work_takes_the_pool_path_where_celery_traces_it(
    direct: tuple[DirectPredict, list[Any]], backend: Any, embed: dict[str, Any]
) -> None:
    # The finisher only stores and acks: a link, a chain's next step, a link_error or a
    # chord counter would be lost on the direct path (issue 20).
    handler, to_pool = direct
    canvas = FakeRequest(backend, kwargs={"rows": ROWS[0]}, embed=embed)
    plain = FakeRequest(backend, kwargs={"rows": ROWS[1]}, embed={"callbacks": None})
    handler(canvas)
    handler(plain)
    _answered([plain])
    assert to_pool == [canvas]
    assert canvas.acks == [] and canvas.events == []


@pytest.mark.parametrize(
    ("kwargs", "code", "detail"),
    [
        ({"row": {}}, "invalid_input", "unknown_argument"),
        ({}, "invalid_input", "missing_argument"),
        ({"rows": {**ROWS[0], "unit_price": "cheap"}}, "invalid_input", "not_a_number"),
        ({"rows": []}, "invalid_input", "empty_job"),
    ],
)
def test_a_bad_job_gets_its_typed_error_without_a_forward_pass(
    direct: tuple[DirectPredict, list[Any]], backend: Any, kwargs: Any, code: str, detail: str
) -> None:
    handler, _ = direct
    req = FakeRequest(backend, kwargs=kwargs)
    handler(req)
    _answered([req])
    meta = backend.get_task_meta(req.id)
    assert req.acks == ["FAILURE"]
    error = meta["result"]
    assert error.info["code"] == code and detail in {e["code"] for e in error.details}


def test_a_malformed_time_limit_is_refused_as_on_the_pool_path(
    direct: tuple[DirectPredict, list[Any]], backend: Any
) -> None:
    handler, _ = direct
    req = FakeRequest(backend, kwargs={"rows": ROWS[0]})
    req.time_limits = "x"
    with pytest.raises(ValueError):  # worker.celeryapp.refusal answers it with invalid_message
        handler(req)
    assert req.events == []


def _output() -> BatchOutput:
    return BatchOutput(np.array([[0.5]]), 1, 1, 1, 1, 0.0, 1.0)


def _finisher(records: list[tuple[str, str]]) -> Finisher:
    def record(job: HeldJob) -> None:
        records.append((job.request.id, job.outcome()))

    return Finisher(record)


def _value(part: BatchOutput) -> dict[str, Any]:
    return {"value": float(part.values[0, 0])}


def _hold(
    finisher: Finisher, req: FakeRequest, deadline_s: float
) -> tuple[HeldJob, Future[BatchOutput]]:
    """As DirectPredict holds a job: the finisher takes it when its future is set."""
    now, future = time.monotonic(), Future[BatchOutput]()
    job = HeldJob(req, "m", now, now + deadline_s, make_result=_value, future=future)
    finisher.hold(job)
    future.add_done_callback(lambda _: finisher.ready(job))
    return job, future


def test_a_job_past_its_deadline_gets_one_answer_even_if_its_pass_ends_later(
    backend: Any,
) -> None:
    records: list[tuple[str, str]] = []
    finisher = _finisher(records)
    req = FakeRequest(backend)
    _, late = _hold(finisher, req, deadline_s=0.0)
    _answered([req])
    assert finisher.drain(5) == 0
    late.set_result(_output())  # its forward pass ends after all: ignored
    on_time = FakeRequest(backend)
    _hold(finisher, on_time, deadline_s=60)[1].set_result(_output())
    _answered([on_time])
    assert finisher.drain(5) == 0
    meta = backend.get_task_meta(req.id)
    assert meta["status"] == "FAILURE" and meta["result"].info["code"] == "inference_failed"
    assert req.acks == ["FAILURE"]
    assert records == [(req.id, "inference_failed"), (on_time.id, "ok")]


def test_drain_waits_for_held_jobs_and_counts_those_left(backend: Any) -> None:
    finisher = _finisher([])
    req = FakeRequest(backend)
    _, future = _hold(finisher, req, deadline_s=60)
    assert finisher.drain(0.2) == 1
    threading.Timer(0.2, lambda: future.set_result(_output())).start()
    assert finisher.drain(10) == 0
    assert req.acks == ["SUCCESS"]
    assert backend.get_task_meta(req.id)["result"] == {"value": 0.5}


def test_an_answer_that_cannot_be_stored_sends_the_job_back_unacked() -> None:
    # A backend whose Redis is gone (a port nobody listens on), with no retries.
    with RedisServer() as gone:
        url = gone.url
    app = _app(url, result_backend_transport_options={"retry_policy": {"max_retries": 0}})
    records: list[tuple[str, str]] = []
    finisher = _finisher(records)
    req = FakeRequest(app.backend)
    req.acknowledge = lambda: pytest.fail("acked an unstored answer")  # type: ignore[method-assign]
    _hold(finisher, req, deadline_s=60)[1].set_result(_output())
    _answered([req])
    assert req.rejects == [True] and records == []
    assert finisher.drain(5) == 0
    app.close()


def test_a_stalled_redis_does_not_fail_a_job_whose_pass_ended() -> None:
    """Redis stops answering (SIGSTOP) while the finisher stores one job; a second job's
    forward pass ends meanwhile, and its deadline passes before the store returns. The
    second job is answered with its outputs: the deadline is about the pass, not Redis."""
    with RedisServer() as server:
        app = _app(server.url)
        records: list[tuple[str, str]] = []
        finisher = _finisher(records)
        first, second = FakeRequest(app.backend), FakeRequest(app.backend)
        _, first_pass = _hold(finisher, first, deadline_s=60)
        _, second_pass = _hold(finisher, second, deadline_s=0.5)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            first_pass.set_result(_output())  # the finisher takes it, and blocks storing it
            time.sleep(0.3)  # the fault: Redis answers nothing; the finisher is in its store
            second_pass.set_result(_output())  # this pass ends while Redis is stalled
            time.sleep(2.2)  # still nothing: past the second job's deadline and a sweep
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        _answered([first, second])
        assert finisher.drain(5) == 0
        assert second.acks == ["SUCCESS"]
        assert sorted(records) == sorted([(first.id, "ok"), (second.id, "ok")])
        app.close()


def test_a_store_that_fails_for_a_moment_is_tried_again_not_requeued() -> None:
    """Redis is down when the answer is ready and back a second later: the finisher
    stores it on a later try and acks it; the job never goes round the queue."""
    with RedisServer() as first:
        port, url = first.port, first.url
    app = _app(url, result_backend_transport_options={"retry_policy": {"max_retries": 0}})
    records: list[tuple[str, str]] = []
    finisher = _finisher(records)
    req = FakeRequest(app.backend)
    _hold(finisher, req, deadline_s=60)[1].set_result(_output())
    time.sleep(1.0)  # the fault: nothing listens on the port for this long
    with RedisServer(port):
        _answered([req])
        assert req.acks == ["SUCCESS"] and req.rejects == []
        assert records == [(req.id, "ok")]
    app.close()
