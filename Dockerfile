# One image for every inferq service: workers, producers, bulk scoring.
#   docker build -t inferq .                                  # CPU (the default)
#   docker build -t inferq:gpu --build-arg TF_CUDA=true .     # adds the CUDA wheels
# docker-compose.yml builds it once, as `inferq`, for all of its inferq services.

# The dependencies' list, [project].dependencies itself (tomllib, not a copy), in a stage of
# its own: the next stage copies only the list, so an edit elsewhere in pyproject.toml (a
# linter's settings) leaves the install below cached.
FROM python:3.11-slim AS dependencies
COPY pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /dependencies.txt

FROM python:3.11-slim

# The plain tensorflow wheel runs on CPU only unless the CUDA libraries are importable;
# its `and-cuda` extra brings them as wheels, so no CUDA base image is needed. Off by
# default: they add gigabytes that a CPU worker never uses.
ARG TF_CUDA=false

WORKDIR /app
ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1

# The dependencies first, in a layer of their own: it is rebuilt only when the list or the
# pins change, so a change to inferq's code rebuilds in a minute or two, not the many
# that TensorFlow's install takes.
COPY requirements.lock ./
COPY --from=dependencies /dependencies.txt /tmp/dependencies.txt
RUN pip install --no-cache-dir -c requirements.lock -r /tmp/dependencies.txt \
 && if [ "$TF_CUDA" = "true" ]; then \
      pip install --no-cache-dir -c requirements.lock "tensorflow[and-cuda]"; \
    fi

# Set before the code goes in, so these layers stay cached too. Absolute paths: a service
# that changes its working directory still finds the models.
ENV INFERQ_REGRESSOR_PATH=/app/models/regressor.h5 \
    INFERQ_MODELS_DIR=/app/models \
    INFERQ_READY_FILE=/tmp/inferq-ready
CMD ["inferq", "worker", "--queues", "regression"]

# The code: .dockerignore lets only pyproject.toml, requirements.lock, README.md and the
# three packages (inferq, worker, producer) through, so one COPY takes exactly those.
COPY . ./
# --no-deps: everything it needs is in the layers above; pip would only check again.
RUN pip install --no-cache-dir --no-deps . \
 && inferq models build --dir /app/models
USER nobody
