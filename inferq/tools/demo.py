"""`inferq demo`: one worker, a few games, dollar predictions, a clean stop."""

from __future__ import annotations

from kombu.utils.url import maybe_sanitize_url

from inferq.core.constants import COURSE_TARGET
from inferq.core.settings import Settings
from inferq.data import sample_image
from inferq.errors import InferqError
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer.client import Client

GAMES = 6


def _rows(seed: int = 42) -> tuple[list[dict[str, float]], list[float]]:
    cols = generate(GAMES, seed)
    actual = [float(v) for v in cols.pop(COURSE_TARGET)]
    rows = [{name: float(col[i]) for name, col in cols.items()} for i in range(GAMES)]
    return rows, actual


def run_demo(settings: Settings) -> int:
    with redis_url_or_own(settings.redis_url) as url:
        source = "INFERQ_REDIS_URL" if settings.redis_url else "started for this demo"
        print(f"redis   {maybe_sanitize_url(url)} ({source})")
        env = {
            "INFERQ_REGRESSOR_PATH": str(settings.regressor_path.resolve()),
            "INFERQ_MODELS_DIR": str(settings.models_dir.resolve()),
        }
        queues = ("regression", "vision")
        with WorkerProcess(url, queues, env=env, args=["--loglevel", "WARNING"]) as worker:
            print(
                f"worker  pid {worker.pid} ready: both models loaded once, batching up to "
                f"{settings.max_batch_size} rows or {settings.max_wait_ms} ms"
            )
            with Client(settings.model_copy(update={"redis_url": url})) as client:
                _predict(client)
                _classify(client)
            code = worker.stop()
        print(f"worker  stopped (exit code {code})")
    print("redis   stopped" if not settings.redis_url else "redis   left running (yours)")
    return 0 if code == 0 else 1


def _predict(client: Client) -> None:
    rows, actual = _rows()
    handles = [client.submit(row) for row in rows]  # one job per game, batched by the worker
    columns = ("rating", "price", "action", "sequel")
    print("\n" + " ".join(f"{c:>6}" for c in columns) + f" {'predicted':>12} {'actual':>12}")
    passes: dict[int, int] = {}  # forward pass id -> jobs in it
    for handle, row, truth in zip(handles, rows, actual, strict=True):
        result = handle.wait(timeout_s=30)
        passes[result.batch.id] = result.batch.jobs
        print(
            f"{row['critic_rating']:>6.1f} {row['unit_price']:>6.2f} {row['is_action']:>6.0f} "
            f"{row['is_sequel']:>6.0f} {result.earnings_usd[0]:>12,.0f} {truth:>12,.0f}"
        )
    print(
        f"\nmodel {result.model.name} version {result.model.version}; "
        f"{len(handles)} jobs ran in {len(passes)} forward pass(es) of "
        f"{' + '.join(str(jobs) for jobs in passes.values())} jobs"
    )
    try:
        client.predict({**rows[0], "critic_rating": "great"}, timeout_s=30)
    except InferqError as exc:
        print(f"a bad job gets a typed error instead:\n{exc}\n")


def _classify(client: Client) -> None:
    for name in ("chelsea", "coffee"):
        result = client.classify(sample_image(name), top_k=3, timeout_s=120)
        labels = ", ".join(f"{x.label} ({x.score:.2f})" for x in result.labels)
        print(f"image   {name}.jpg: {labels}")
    print(f"model   {result.model.name} version {result.model.version}\n")
