"""The job bodies, one module per task, free of Celery: validate the payload, hand the
inputs to the model's batch runner, build the result from its forward pass."""
