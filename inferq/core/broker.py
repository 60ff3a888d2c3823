"""Is Redis there, and does it let us in? One PING, answered in words.

The worker's start-up, `inferq worker`, `inferq health` and `inferq queues` ask this
before anything else, so a wrong password or an unreachable Redis ends in one line
that says which (with the password masked), not in a loop of retries. With Sentinels
(a ``sentinel://`` URL) the PING goes to the master they name, found as Celery and
kombu find it.
"""

from __future__ import annotations

from urllib.parse import urlparse

import redis
from kombu.utils.url import maybe_sanitize_url
from redis.sentinel import Sentinel

from inferq.core.settings import Settings

SENTINEL_PORT = 26379


def sentinel_addresses(url: str) -> list[tuple[str, int]]:
    """(host, port) of each Sentinel in a ``sentinel://a:26379;sentinel://b:26379/0`` URL."""
    parts = [urlparse(part) for part in url.split(";")]
    return [(p.hostname or "localhost", p.port or SENTINEL_PORT) for p in parts]


def redis_client(settings: Settings, timeout_s: float) -> redis.Redis:
    """A client of the broker's Redis, for commands that read it directly: the URL's
    server, or the master the Sentinels name now (looked up again on each new
    connection, so it follows a failover). ``close_client`` closes it."""
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if not settings.uses_sentinel:
        return redis.Redis.from_url(settings.broker_url, **timeouts)
    first = urlparse(settings.broker_url.split(";")[0])
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addresses(settings.broker_url),
        sentinel_kwargs={"password": settings.sentinel_password, **timeouts},
        username=first.username or None,
        password=first.password or None,
        db=int(first.path.strip("/") or 0),  # kombu and Celery read the first part's
        **timeouts,
    )
    return sentinel.master_for(str(settings.sentinel_master))  # type: ignore[no-untyped-call,no-any-return]


def close_client(client: redis.Redis) -> None:
    """Close a ``redis_client``, and the connections it opened to the Sentinels."""
    client.close()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for node in getattr(manager, "sentinels", ()):
        node.close()


def describe(settings: Settings) -> str:
    """Where the broker is, password masked (each Sentinel's, and the master's name)."""
    where = ";".join(maybe_sanitize_url(part) for part in settings.broker_url.split(";"))
    return f"{where} (master {settings.sentinel_master})" if settings.uses_sentinel else where


def broker_refusal(settings: Settings, timeout_s: float = 5.0) -> tuple[bool, str] | None:
    """None when Redis answers PING; otherwise (whether it refused us, why), masked.

    Refused (bad credentials, an ACL user without the rights) is final; unreachable
    may pass, which is why Celery itself keeps retrying a broker it cannot reach.
    """
    where = describe(settings)  # the password never reaches a message
    client = redis_client(settings, timeout_s)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        hint = "check the user and password in INFERQ_REDIS_URL"
        if settings.uses_sentinel:
            hint += " (the Sentinels' own: INFERQ_SENTINEL_PASSWORD)"
        return True, f"authentication failed at Redis {where} ({exc}); {hint}"
    except redis.ResponseError as exc:  # NOPERM: an ACL user may not even PING
        return True, f"Redis at {where} refused the worker's user: {exc}"
    except redis.RedisError as exc:  # a Sentinel that knows no such master too
        return False, f"cannot reach Redis at {where}: {exc}"
    finally:
        close_client(client)
    return None


def check_broker(settings: Settings, timeout_s: float = 5.0) -> str | None:
    """None when Redis answers PING; otherwise why not (credentials masked)."""
    problem = broker_refusal(settings, timeout_s)
    return problem[1] if problem else None
