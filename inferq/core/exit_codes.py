"""Exit codes of the inferq commands, in one place (docs/reference.md lists them).

A code means the same thing wherever it is used; commands use the ones that apply.
"""

from typing import Final

OK: Final = 0
# `inferq health`: a queue has no worker with its model. `inferq score` and
# `score-images`: more failed rows than --max-errors (the output is still complete).
# `inferq predict` and `classify`: a job was answered with an error (a bad row, an
# unreadable image).
UNHEALTHY: Final = 1
ROWS_FAILED: Final = 1
# Bad options, settings or input: the command line or the environment must change.
USAGE: Final = 2
# A worker's model file is missing or unusable (`inferq worker`, `celery -A worker`).
MODEL: Final = 3
# `inferq score` and `score-images`: chunks left unscored; rerun with --resume.
UNSCORED: Final = 3
# `inferq predict` and `classify`: jobs not answered within --timeout-s; every answered
# row or image is printed all the same, each unanswered one with the error `timeout`.
UNANSWERED: Final = 3
# Redis refused the credentials or could not be reached (worker start, health, queues).
BROKER: Final = 4
# Interrupted (Ctrl-C or SIGTERM); a bulk run resumes with --resume.
INTERRUPTED: Final = 130
