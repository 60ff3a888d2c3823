# Flower for docker-compose.yml: Flower 2.0.1 on the workers' own Celery, kombu and redis
# (requirements.lock), not the mher/flower:2.0.1 image.
#   docker build -t inferq-flower:2.0.1 -f flower.Dockerfile .
#
# Why not mher/flower:2.0.1: it was built in August 2023 with the Celery and kombu of then
# (5.3.x). Before kombu 5.4.0 the Sentinel transport published and listened for fanout
# messages on the literal channel `/{db}.<exchange>`, while kombu 5.4+ (the workers run
# 5.7) uses `/0.<exchange>` as its plain Redis transport always did (kombu #1986, #2152).
# Celery's broadcasts (`inspect`, what /api/workers asks) and its task events both travel
# over fanout, so on the Sentinels that Flower and the workers never heard each other:
# Flower stayed healthy with an empty worker list. With the same kombu on both sides that
# cannot happen, whatever the transport; on plain `redis://` both versions agree.
#
# No TensorFlow and no inferq code: a small image of its own, built by compose beside
# `inferq` (.dockerignore lets requirements.lock through).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /tmp/requirements.lock
# celery[redis] at the lock's versions (and so kombu, redis, billiard, click ...). Flower
# is not an inferq dependency, so it and the packages only it needs are pinned here.
RUN pip install --no-cache-dir -c /tmp/requirements.lock "celery[redis]" \
      flower==2.0.1 tornado==6.6.1 humanize==4.17.0 pytz==2026.6 \
 && rm /tmp/requirements.lock
EXPOSE 5555
# Flower keeps nothing on disk here (no --persistent); compose writes its settings module
# to /tmp at each start.
USER nobody
WORKDIR /tmp
CMD ["celery", "flower"]
