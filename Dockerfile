# One image for every inferq service: workers, producers, bulk scoring.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml requirements.lock README.md ./
COPY inferq ./inferq
COPY worker ./worker
COPY producer ./producer
RUN pip install --no-cache-dir -c requirements.lock . \
 && inferq models build --dir /app/models

ENV INFERQ_REGRESSOR_PATH=/app/models/regressor.h5 \
    INFERQ_READY_FILE=/tmp/inferq-ready
USER nobody
CMD ["inferq", "worker", "--queues", "regression"]
