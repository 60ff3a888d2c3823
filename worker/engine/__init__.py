"""The batch engine: a batch queue, a runner thread that only runs the model, and the
compiled forward pass. Nothing here knows of Celery, Redis or jobs."""
