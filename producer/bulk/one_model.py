"""One model version per bulk output: what a run does when the workers' model changes.

Every chunk names the version the run started with, and a worker serving another
refuses it (ModelVersionMismatch); parts kept from an interrupted run on another
version are refused on --resume (ModelChangedSinceRun). Either way the run either
starts over on the new model (``restart``, at most MAX_MODEL_RESTARTS times: a roll-out
still half done, old and new workers side by side, would otherwise restart without
end) or stops (``fail``). Never an output of two models.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from inferq.errors import ModelVersionMismatch
from producer.bulk.report import Summary
from producer.bulk.sinks import ModelChangedSinceRun, ResumableSink

OnNewModel = Literal["restart", "fail"]
MAX_MODEL_RESTARTS = 3


def on_one_model(
    output: Path, policy: OnNewModel, attempt: Callable[[], Summary], refresh: Callable[[], str]
) -> Summary:
    """Run ``attempt`` until it ends on one model; ``refresh`` learns the new version."""
    restarts = 0
    while True:
        try:
            summary = attempt()
        except (ModelVersionMismatch, ModelChangedSinceRun) as exc:
            if policy != "restart" or restarts >= MAX_MODEL_RESTARTS:
                raise
            restarts += 1
            ResumableSink.discard(output)
            now = refresh()
            before = exc.before if isinstance(exc, ModelChangedSinceRun) else exc.info["expected"]
            print(
                f"inferq: the model changed under the run ({before} -> {now}): "
                "scoring everything again on the new one",
                file=sys.stderr,
                flush=True,
            )
            continue
        summary.model_restarts = restarts
        return summary
