"""`inferq worker`: check settings, model files and Redis, then run Celery workers.

The checks run before any worker process starts, so a missing model or an
unreachable broker ends the command at once with one line saying which.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import redis
from kombu.utils.url import maybe_sanitize_url

from inferq.constants import QUEUE_MODELS
from inferq.errors import InferqError
from inferq.launch import celery_argv, default_nodename, gpu_env, queue_names, supervise
from inferq.settings import Settings

EXIT_CONFIG, EXIT_MODEL, EXIT_BROKER = 2, 3, 4


def broker_refusal(url: str, timeout_s: float = 5.0) -> tuple[bool, str] | None:
    """None when Redis answers PING; otherwise (whether it refused us, why), masked.

    Refused (bad credentials, an ACL user without the rights) is final; unreachable
    may pass, which is why Celery itself keeps retrying a broker it cannot reach.
    """
    where = maybe_sanitize_url(url)  # the password never reaches a message
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        hint = "check the user and password in INFERQ_REDIS_URL"
        return True, f"authentication failed at Redis {where} ({exc}); {hint}"
    except redis.ResponseError as exc:  # NOPERM: an ACL user may not even PING
        return True, f"Redis at {where} refused the worker's user: {exc}"
    except redis.RedisError as exc:
        return False, f"cannot reach Redis at {where}: {exc}"
    finally:
        client.close()
    return None


def check_broker(url: str, timeout_s: float = 5.0) -> str | None:
    """None when Redis answers PING; otherwise why not (credentials masked)."""
    problem = broker_refusal(url, timeout_s)
    return problem[1] if problem else None


def preflight(settings: Settings, logical_queues: Sequence[str]) -> tuple[int, str] | None:
    """(exit code, reason) when the worker cannot serve; None when it can."""
    from worker.registry import check_files

    try:
        check_files(settings, {QUEUE_MODELS[q] for q in logical_queues})
    except InferqError as exc:
        return EXIT_MODEL, exc.message
    problem = check_broker(settings.broker_url)
    if problem:
        hint = (
            "" if settings.redis_url else " (INFERQ_REDIS_URL is unset; `inferq redis` starts one)"
        )
        return EXIT_BROKER, problem + hint
    return None


def run_worker(
    settings: Settings,
    logical_queues: Sequence[str],
    concurrency: int,
    hostname: str | None,
    loglevel: str,
) -> int:
    try:
        queues = queue_names(logical_queues, settings)
    except ValueError as exc:
        print(f"inferq: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    failed = preflight(settings, logical_queues)
    if failed:
        print(f"inferq: {failed[1]}", file=sys.stderr)
        return failed[0]
    if concurrency <= 1:
        # Set before anything in this process can start CUDA, which reads it only once.
        os.environ.update(gpu_env(settings.gpus, settings.process_index))
        from worker import app

        app.worker_main(celery_argv(queues, hostname or default_nodename(logical_queues), loglevel))
        return 0
    argvs = [
        celery_argv(
            queues, f"{hostname}-{i}" if hostname else default_nodename(logical_queues, i), loglevel
        )
        for i in range(1, concurrency + 1)
    ]
    return supervise(argvs, settings.gpus)
