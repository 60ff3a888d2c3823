"""Celery configuration derived from Settings, shared by workers and producers."""

from __future__ import annotations

from typing import Any

from inferq.core.routing import task_routes
from inferq.core.settings import Settings


def restore_sweep_s(visibility_timeout_s: int) -> int:
    """How often a worker looks for unacked jobs older than the visibility timeout."""
    return max(1, min(10, visibility_timeout_s // 4))


def broker_transport_options(visibility_timeout_s: int, redis_timeout_s: float) -> dict[str, Any]:
    # kombu sweeps for overdue unacked jobs every interval x throttle seconds: 10 x 10
    # by default, so a lost worker's jobs came back ~100 s late whatever the visibility
    # timeout. Throttle 1 makes the interval the period; one ZRANGE per sweep.
    # Socket timeouts: without them a command on a connection that died silently (a
    # failover, a NAT or firewall dropping it) waits for TCP to give up, ~15 minutes.
    # kombu's BRPOP runs in the event loop, which they do not touch (kombu 5.7's notes).
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": restore_sweep_s(visibility_timeout_s),
        "unacked_restore_throttle": 1,
        "socket_timeout": redis_timeout_s,
        "socket_connect_timeout": redis_timeout_s,
        # The JSON body goes into kombu's JSON envelope as it is, not base64'd again
        # first: a 3 MB photo was sent in 37 ms and received in 35, now 15 and 17. A
        # message says how its body is encoded, so either kind is read either way.
        "body_encoding": None,
    }


def sentinel_transport_options(settings: Settings) -> dict[str, Any]:
    """What kombu's and Celery's Sentinel transports need: the master's name, and for
    the Sentinels themselves their password and the same socket timeouts (a Sentinel
    that went silent must not hang the search for the master)."""
    if not settings.uses_sentinel:
        return {}
    timeout_s = settings.redis_timeout_s
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password
    return {"master_name": settings.sentinel_master, "sentinel_kwargs": sentinel_kwargs}


def celery_config(settings: Settings) -> dict[str, Any]:
    url = settings.broker_url
    transport = broker_transport_options(settings.visibility_timeout_s, settings.redis_timeout_s)
    transport |= sentinel_transport_options(settings)
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "redis_socket_timeout": settings.redis_timeout_s,
        "redis_socket_connect_timeout": settings.redis_timeout_s,
        "broker_connection_retry_on_startup": True,
        # JSON only, both ways: a pickle message is refused, never unpickled.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A job is acked only after its result (or error) is stored; a lost worker's jobs
        # go back to the queue after the visibility timeout.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Threads: jobs wait side by side for a shared forward pass. Prefetch is bounded
        # by the job slots (multiplier 1), never the whole queue.
        "worker_pool": "threads",
        "worker_concurrency": settings.effective_job_slots,
        "worker_prefetch_multiplier": 1,
        "result_expires": settings.result_ttl_s,
        # A result write that meets a Redis restart is retried (backing off up to 10 s)
        # instead of failing the job with a ConnectionError it did not cause.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "task_default_queue": settings.regression_queue,
        "task_routes": task_routes(settings),
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
    }
