"""Running and watching a deployment: `inferq worker` (the one worker command line),
worker processes for the demo, benchmarks and tests, a Redis server, health and queue
depth."""
