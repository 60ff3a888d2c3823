"""kombu's names for a queue's Redis keys: one list per priority step, and the unacked hash.

kombu keeps a queue as one list per priority step (``NAME``, then ``NAME\\x06\\x163``,
``...6``, ``...9`` for tasks sent with a priority); a job waiting is an entry in one of
them. Jobs a worker holds (prefetched or running) are in the ``unacked`` hash, shared by
every queue of the Redis database. Read from kombu itself, so a kombu that renames them
renames these too (inferq sets no transport option that overrides them).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

PRIORITY_STEPS: list[int] = kombu_redis.PRIORITY_STEPS
PRIORITY_SEP: str = kombu_redis.Channel.sep
UNACKED_KEY: str = kombu_redis.Channel.unacked_key


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting jobs."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]
