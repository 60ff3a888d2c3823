"""Names shared by producers and workers: task names, queues, file attributes.

Every name that crosses a process or a file boundary lives here, so that a
producer that does not import the worker still agrees with it.
"""

from typing import Final

# Celery task names: the public job contract (docs/contract.md).
PREDICT_TASK: Final = "inferq.predict_earnings"
MODEL_INFO_TASK: Final = "inferq.regressor_info"
CLASSIFIER_INFO_TASK: Final = "inferq.classifier_info"
CLASSIFY_TASK: Final = "inferq.classify_image"
CLASSIFY_CHUNK_TASK: Final = "inferq.classify_images"
SCORE_CHUNK_TASK: Final = "inferq.score_chunk"
# Redis keys of image bytes a producer stored for a classify_images chunk ({"blob": id}):
# this prefix and 32 hex digits. Raw bytes: no base64, no JSON, no copy in kombu's
# unacked hash.
IMAGE_BLOB_PREFIX: Final = "inferq-image:"
# The remote-control command `inferq health` broadcasts to workers.
HEALTH_COMMAND: Final = "inferq_health"

# The Redis list where workers move queue entries they cannot deliver (with the raw
# bytes, the reason and the time); `inferq dead-letters` reads and requeues them.
DEAD_LETTER_KEY: Final = "inferq.dead_letters"

# Default queue names; the deployed names come from Settings.
DEFAULT_REGRESSION_QUEUE: Final = "regression"
DEFAULT_VISION_QUEUE: Final = "vision"

# The default classifier: built offline by `inferq models build`.
DEFAULT_CLASSIFIER: Final = "efficientnet_lite0"

# HDF5 root attributes holding the regressor's scaler and feature names.
H5_META_ATTR: Final = "inferq_meta"
H5_META_SCHEMA_ATTR: Final = "inferq_meta_schema"
H5_META_SCHEMA_VERSION: Final = 1

# The course's dataset schema: the nine product features and the target.
COURSE_FEATURES: Final = (
    "critic_rating",
    "is_action",
    "is_exclusive_to_us",
    "is_portable",
    "is_role_playing",
    "is_sequel",
    "is_sports",
    "suitable_for_kids",
    "unit_price",
)
COURSE_TARGET: Final = "total_earnings"

# Largest magnitude accepted for a raw feature: beyond it float32 loses all
# meaning for a product feature, so it is refused rather than predicted.
MAX_ABS_FEATURE: Final = 1e12

# `top_k` of a classify job: 1..TOP_K_MAX labels.
TOP_K_MAX: Final = 1000
