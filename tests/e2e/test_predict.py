"""End to end: real redis-server, real worker processes, real TensorFlow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from celery import Celery

from inferq.core.constants import COURSE_FEATURES, PREDICT_TASK
from inferq.core.modelfile import file_version, read_meta
from inferq.core.settings import Settings
from inferq.errors import InvalidInput
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer import Client
from tests.support.harness import E2E_MAX_BATCH, E2E_QUEUE, SCHEMA_DIR
from tests.support.redis_clients import redis_client

pytestmark = pytest.mark.e2e


def _rows(n: int, seed: int = 3) -> list[dict[str, float]]:
    cols = generate(n, seed)
    return [{f: float(cols[f][i]) for f in COURSE_FEATURES} for i in range(n)]


def _expected_dollars(regressor_path: Path, rows: list[dict[str, float]]) -> np.ndarray:
    from worker.loading.keras_files import load_keras

    meta = read_meta(regressor_path)
    x = meta.scale_features(np.array([[r[f] for f in meta.features] for r in rows]))
    return meta.to_dollars(np.asarray(load_keras(regressor_path)(x.astype(np.float32))))


def test_prediction_matches_the_model_in_process(client: Client, regressor_path: Path) -> None:
    rows = _rows(5)
    result = client.predict(rows, timeout_s=30)
    np.testing.assert_allclose(
        result.earnings_usd, _expected_dollars(regressor_path, rows), rtol=1e-5
    )
    assert result.model.name == "regressor"
    assert result.model.version == file_version(regressor_path)
    assert result.timings_ms.total_ms >= result.timings_ms.inference_ms


def test_a_burst_of_jobs_shares_forward_passes(client: Client, regressor_path: Path) -> None:
    rows = _rows(48, seed=4)
    handles = [client.submit(row) for row in rows]
    results = [h.wait(30) for h in handles]
    got = [r.earnings_usd[0] for r in results]
    np.testing.assert_allclose(got, _expected_dollars(regressor_path, rows), rtol=1e-5)
    assert max(r.batch.jobs for r in results) > 1
    assert all(r.batch.rows <= E2E_MAX_BATCH for r in results)
    assert all(r.batch.padded_rows in (1, 2, 4, 8, 16) for r in results)


def test_bad_jobs_fail_alone_and_their_batch_mates_succeed(
    client: Client, regressor_path: Path
) -> None:
    rows = _rows(24, seed=5)
    bad = {
        3: {**rows[3], "unit_price": "cheap"},
        10: {**rows[10], "is_sports": float("nan")},
        17: {k: v for k, v in rows[17].items() if k != "critic_rating"},
    }
    handles = [client.submit(bad.get(i, row)) for i, row in enumerate(rows)]
    expected = _expected_dollars(regressor_path, rows)
    codes, batch_jobs = {}, []
    for i, handle in enumerate(handles):
        if i in bad:
            with pytest.raises(InvalidInput) as info:
                handle.wait(30)
            codes[i] = [(e["field"], e["code"]) for e in info.value.details]
        else:
            result = handle.wait(30)
            assert result.earnings_usd[0] == pytest.approx(expected[i], rel=1e-5)
            batch_jobs.append(result.batch.jobs)
    assert codes == {
        3: [("unit_price", "not_a_number")],
        10: [("is_sports", "not_finite")],
        17: [("critic_rating", "missing_field")],
    }
    assert max(batch_jobs) > 1


def test_a_job_larger_than_the_max_batch_keeps_its_row_order(
    client: Client, regressor_path: Path
) -> None:
    rows = _rows(40, seed=6)
    result = client.predict(rows, timeout_s=30)
    assert result.batch.passes == 3
    np.testing.assert_allclose(
        result.earnings_usd, _expected_dollars(regressor_path, rows), rtol=1e-5
    )


def test_too_many_rows_in_one_job(client: Client) -> None:
    with pytest.raises(InvalidInput) as info:
        client.predict(_rows(1, seed=7) * 101, timeout_s=30)
    assert info.value.details[0]["code"] == "too_many_rows"


def test_regressor_info(client: Client, regressor_path: Path) -> None:
    info = client.regressor_info()
    assert info.features == list(COURSE_FEATURES)
    assert info.model.version == file_version(regressor_path)


def test_send_task_from_a_service_that_does_not_import_inferq(
    worker: WorkerProcess, settings: Settings
) -> None:
    """Plain Celery + JSON, as documented in the README; checked against docs/schema."""
    app = Celery(broker=settings.broker_url, backend=settings.broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    row = _rows(1, seed=8)[0]
    ok = app.send_task(PREDICT_TASK, kwargs={"rows": row}, queue=E2E_QUEUE)
    bad = app.send_task(PREDICT_TASK, kwargs={"rows": {**row, "colour": 1}}, queue=E2E_QUEUE)
    payload_schema = json.loads((SCHEMA_DIR / f"{PREDICT_TASK}.payload.schema.json").read_text())
    jsonschema.validate({"rows": row}, payload_schema)
    value = ok.get(timeout=30)
    jsonschema.validate(
        value, json.loads((SCHEMA_DIR / f"{PREDICT_TASK}.result.schema.json").read_text())
    )
    bad.get(timeout=30, propagate=False)
    # What a non-Python consumer sees: the raw JSON stored in the result backend.
    raw = json.loads(redis_client(settings.broker_url).get(f"celery-task-meta-{bad.id}"))
    assert raw["status"] == "FAILURE"
    assert raw["result"]["exc_type"] == "InvalidInput"
    # The stored format names the class's module: producers find the class by it.
    assert raw["result"]["exc_module"] == "inferq.errors"
    error = raw["result"]["exc_message"][0]
    jsonschema.validate(
        error, json.loads((SCHEMA_DIR / "inferq.job_error.schema.json").read_text())
    )
    assert error["errors"][0]["field"] == "colour" and error["errors"][0]["code"] == "unknown_field"
    app.close()


def test_the_plain_celery_command_serves_jobs(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    queue = "test-plain-celery"
    argv = celery_command([queue], "plain@%h", "INFO")
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": queue}
    with WorkerProcess(redis_server.url, env=env, argv=argv) as proc:
        settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
        with Client(settings) as c:
            assert c.predict(_rows(2), timeout_s=30).earnings_usd[1] > 0
        log = proc.log_tail(20_000)
    assert "models=regressor@" in log
    assert log.count("model loaded: regressor name=regressor") == 1


@pytest.mark.parametrize("command", ["inferq", "celery"])
@pytest.mark.parametrize("damage", ["missing", "truncated", "not_a_model"])
def test_worker_fails_fast_on_a_bad_model_file(
    redis_server: RedisServer, regressor_path: Path, tmp_path: Path, command: str, damage: str
) -> None:
    model = tmp_path / "regressor.h5"
    if damage == "truncated":
        model.write_bytes(regressor_path.read_bytes()[:5000])
    elif damage == "not_a_model":
        model.write_text("hello")
    argv = (
        [sys.executable, "-m", "inferq", "worker"]
        if command == "inferq"
        else celery_command(["regression"], "bad-model@%h", "INFO")
    )
    env = {
        **dict(__import__("os").environ),
        "INFERQ_REDIS_URL": redis_server.url,
        "INFERQ_REGRESSOR_PATH": str(model),
    }
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("inferq: ")]
    assert len(lines) == 1 and str(model) in lines[0]


def test_worker_names_an_unreachable_redis(regressor_path: Path) -> None:
    from inferq.ops.redis_server import free_port

    env = {
        **dict(__import__("os").environ),
        "INFERQ_REGRESSOR_PATH": str(regressor_path),
        "INFERQ_REDIS_URL": f"redis://:secret@127.0.0.1:{free_port()}/0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "inferq", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 4
    assert "cannot reach Redis" in proc.stderr and "secret" not in proc.stderr


def test_worker_refuses_unknown_settings(regressor_path: Path) -> None:
    env = {**dict(__import__("os").environ), "INFERQ_MAX_BATCHSIZE": "8"}
    proc = subprocess.run(
        [sys.executable, "-m", "inferq", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "did you mean INFERQ_MAX_BATCH_SIZE" in proc.stderr


def test_concurrency_runs_processes_with_one_model_each_and_distinct_names(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    queue = "test-concurrency"
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": queue}
    proc = WorkerProcess(redis_server.url, env=env, args=["--concurrency", "2"]).start()
    try:
        settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
        with Client(settings) as c:
            handles = [c.submit(row) for row in _rows(20, seed=9)]
            assert all(h.wait(60).earnings_usd[0] > 0 for h in handles)
        # The ready file comes from whichever child is first; wait (with a deadline)
        # until both have announced their node.
        deadline = time.monotonic() + 120
        while len(set(re.findall(r"ready: node=(\S+)", proc.log_tail(100_000)))) < 2:
            assert time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.1)  # polling a log file the children write; deadline-bounded
    finally:
        code = proc.stop()
        log = proc.log_tail(100_000)
        proc.close()
    assert code == 0
    pids = set(re.findall(r"model loaded: regressor .* pid=(\d+)", log))
    nodes = set(re.findall(r"ready: node=(\S+)", log))
    assert len(pids) == 2 and len(nodes) == 2


def test_an_unknown_task_name_gets_a_typed_error_instead_of_silence(
    worker: WorkerProcess, settings: Settings
) -> None:
    from inferq.errors import UnknownTask
    from producer.handles import failure

    with Client(settings) as c:
        result = c.app.send_task("inferq.predict_earning", kwargs={"rows": {}}, queue=E2E_QUEUE)
        value = result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"  # stored by Celery: the caller is not left waiting
    error = failure(result.state, value)
    assert isinstance(error, UnknownTask) and "inferq.predict_earning" in error.message
