"""The producer client: enqueue prediction jobs and wait for typed results.

from producer import Client
with Client() as client:
    result = client.predict({"critic_rating": 3.5, ..., "unit_price": 59.99})
    print(result.earnings_usd)
"""

from inferq.core.contract import PredictResult
from inferq.errors import (
    ContentRefused,
    InferenceFailed,
    InferqError,
    InvalidInput,
    InvalidMessage,
    JobExpired,
    JobRevoked,
    JobTimeout,
    ModelUnavailable,
    UnknownTask,
)
from producer.client import Client
from producer.handles import Handle

__all__ = [
    "Client",
    "ContentRefused",
    "Handle",
    "InferenceFailed",
    "InferqError",
    "InvalidInput",
    "InvalidMessage",
    "JobExpired",
    "JobRevoked",
    "JobTimeout",
    "ModelUnavailable",
    "PredictResult",
    "UnknownTask",
]
