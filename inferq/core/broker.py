"""Is Redis there, and does it let us in? One PING, answered in words.

The worker's start-up, `inferq worker`, `inferq health` and `inferq queues` ask this
before anything else, so a wrong password or an unreachable Redis ends in one line
that says which (with the password masked), not in a loop of retries.
"""

from __future__ import annotations

import redis
from kombu.utils.url import maybe_sanitize_url


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


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    """A plain client of the broker's Redis, for commands that read it directly."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


def check_broker(url: str, timeout_s: float = 5.0) -> str | None:
    """None when Redis answers PING; otherwise why not (credentials masked)."""
    problem = broker_refusal(url, timeout_s)
    return problem[1] if problem else None
