# One image for every inferq service: workers, producers, bulk scoring.
#   docker build -t inferq .                                  # CPU (the default)
#   docker build -t inferq:gpu --build-arg TF_CUDA=true .     # adds the CUDA wheels
FROM python:3.11-slim

# The plain tensorflow wheel runs on CPU only unless the CUDA libraries are importable;
# its `and-cuda` extra brings them as wheels, so no CUDA base image is needed. Off by
# default: they add gigabytes that a CPU worker never uses.
ARG TF_CUDA=false

WORKDIR /app
ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml requirements.lock README.md ./
COPY inferq ./inferq
COPY worker ./worker
COPY producer ./producer
RUN pip install --no-cache-dir -c requirements.lock . \
 && if [ "$TF_CUDA" = "true" ]; then \
      pip install --no-cache-dir -c requirements.lock "tensorflow[and-cuda]"; \
    fi \
 && inferq models build --dir /app/models

# Absolute paths: a service that changes its working directory still finds the models.
ENV INFERQ_REGRESSOR_PATH=/app/models/regressor.h5 \
    INFERQ_MODELS_DIR=/app/models \
    INFERQ_READY_FILE=/tmp/inferq-ready
USER nobody
CMD ["inferq", "worker", "--queues", "regression"]
