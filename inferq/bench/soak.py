"""`inferq bench soak`: mixed traffic for N minutes while faults are injected on a schedule.

Stream predictions, image classifications and bulk runs go on while, every few
seconds, the next fault of the schedule strikes: the regression worker killed (-9) or
paused (SIGSTOP), Redis restarted or stalled, garbage entries pushed onto the queues,
and once, half-way, the regressor rolled out to another model version. Every answer
is checked against the model run in this process (for the version it names), every
bulk output must hold one model version, the workers' memory is sampled, and a worker
that stops without a fault stopping it is named (and replaced). The report: jobs,
answered, wrong, lost, duplicated executions, peak RSS, workers that exited, dead
letters, jobs left unacked once the traffic is over (none may stay parked: issue 19);
the command exits 1 when anything was wrong or lost, a worker exited, or a job stayed
unacked.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv

from inferq.bench.bulk import write_products
from inferq.bench.phases import log
from inferq.bench.soak_cluster import REGRESSION_QUEUE, VISION_QUEUE, Cluster
from inferq.bench.soak_traffic import BulkTraffic, JobTraffic
from inferq.core.constants import COURSE_FEATURES
from inferq.core.images import decode_image
from inferq.core.settings import Settings
from inferq.data import SAMPLE_IMAGES, sample_image
from inferq.tools.local_scorer import LocalScorer
from inferq.tools.sample_data import generate
from worker.loading.classifier import load_classifier

# The faults, in turn; half-way, once, the regressor is rolled out to its other version.
ROTATION = ("kill_worker", "restart_redis", "push_garbage", "stall_redis", "pause_worker")


@dataclass(frozen=True)
class SoakPlan:
    minutes: float
    fault_every_s: float = 20.0
    stream_per_s: float = 40.0
    images_per_s: float = 2.0
    bulk_rows: int = 20_000


def _dollars(models: list[Path], raw: np.ndarray) -> dict[str, np.ndarray]:
    """Each model version's dollars for ``raw`` rows, computed in this process."""
    out = {}
    for model in models:
        scorer = LocalScorer(model, batch_rows=1024)
        out[scorer.version] = scorer.submit("", raw)
    return out


def _top1(settings: Settings, images: list[bytes]) -> list[str]:
    loaded = load_classifier(settings)
    x = np.stack([loaded.preprocess(decode_image(data)) for data in images]).astype(np.float32)
    probs = np.asarray(loaded.keras_model(x, training=False))
    return [loaded.labels.top_k(p, 1)[0]["label"] for p in probs]


def _traffic(settings: Settings, cluster: Cluster, plan: SoakPlan, tmp: Path) -> dict[str, Any]:
    client_settings = settings.model_copy(
        update={"redis_url": cluster.url, "regression_queue": REGRESSION_QUEUE,
                "vision_queue": VISION_QUEUE}
    )  # fmt: skip
    cols = generate(300, seed=17)
    raw = np.stack([cols[f] for f in COURSE_FEATURES], axis=1)
    rows = [dict(zip(COURSE_FEATURES, map(float, r), strict=True)) for r in raw]
    stream_refs = _dollars(cluster.models, raw)

    def right_dollars(index: int, result: Any) -> bool:
        want = stream_refs.get(result.model.version)
        return want is not None and abs(result.earnings_usd[0] / want[index] - 1) <= 1e-5

    images = [sample_image(name).read_bytes() for name in SAMPLE_IMAGES]
    labels = _top1(settings, images)
    csv_path, _ = write_products(tmp, plan.bulk_rows)
    table = pacsv.read_csv(csv_path)
    bulk_raw = np.stack([table.column(f).to_numpy() for f in COURSE_FEATURES], axis=1)
    env = {**client_settings.to_env(), "PATH": "/usr/bin:/bin"}
    return {
        "stream": JobTraffic(
            client_settings, lambda c, i: c.submit(rows[i]), right_dollars, len(rows),
            plan.stream_per_s,
        ),
        "images": JobTraffic(
            client_settings, lambda c, i: c.submit_image(images[i], top_k=1),
            lambda i, r: r.labels[0].label == labels[i], len(images), plan.images_per_s,
        ),
        "bulk": BulkTraffic(env, csv_path, tmp, _dollars(cluster.models, bulk_raw)),
    }  # fmt: skip


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _watch(cluster: Cluster, rss: dict[int, list[float]], exits: list[str]) -> None:
    """One tick's look at the workers: an RSS sample each, and any that stopped alone."""
    for pid in cluster.worker_pids():
        sample = _rss_mb(pid)
        if sample is not None:
            rss.setdefault(pid, []).append(sample)
    for what in cluster.exited():
        exits.append(what)
        log(what)


def _faults(
    cluster: Cluster, plan: SoakPlan, rss: dict[int, list[float]], exits: list[str]
) -> list[dict[str, Any]]:
    """Run the schedule for the plan's minutes; the faults, with when they struck."""
    started, rolled, turn = time.monotonic(), False, 0
    done: list[dict[str, Any]] = []
    end = started + plan.minutes * 60
    next_fault = started + plan.fault_every_s
    while (now := time.monotonic()) < end:
        _watch(cluster, rss, exits)
        if now >= next_fault:
            if not rolled and now - started >= plan.minutes * 30:
                name, rolled = "roll_out", True
            else:
                name, turn = ROTATION[turn % len(ROTATION)], turn + 1
            what = getattr(cluster, name)()
            done.append({"at_s": round(now - started, 1), "fault": name, "what": what})
            log(f"fault at {done[-1]['at_s']} s: {what}")
            next_fault = time.monotonic() + plan.fault_every_s
        time.sleep(1.0)  # the schedule's tick: one RSS sample per worker per second
    return done


def _executions(logs: list[Path]) -> Counter[tuple[str, str]]:
    """(job id, task) -> how many times a worker ran it (one log line per run)."""
    counts: Counter[tuple[str, str]] = Counter()
    for path in logs:
        if path.exists():
            counts.update(
                re.findall(r"job=(\S+) task=inferq\.(\w+)", path.read_text(errors="replace"))
            )
    return counts


def run_soak(settings: Settings, plan: SoakPlan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="inferq-soak-") as name:
        tmp = Path(name)
        cluster = Cluster(settings, tmp).start()
        rss: dict[int, list[float]] = {}
        exits: list[str] = []
        try:
            traffic = _traffic(settings, cluster, plan, tmp)
            for thread in traffic.values():
                thread.start()
            log(f"soak: {plan.minutes:g} min, a fault every {plan.fault_every_s:g} s")
            faults = _faults(cluster, plan, rss, exits)
            for thread in traffic.values():
                thread.stop.set()
            for thread in traffic.values():
                thread.join(timeout=600)
            _watch(cluster, rss, exits)
            letters = cluster.dead_letters()
            unacked = cluster.unacked_left()
        finally:
            cluster.close()
        runs = _executions(cluster.logs)
    return _report(plan, faults, traffic, runs, rss, exits, letters, unacked)


def _report(
    plan: SoakPlan,
    faults: list[dict[str, Any]],
    traffic: dict[str, Any],
    runs: Counter[tuple[str, str]],
    rss: dict[int, list[float]],
    exits: list[str],
    letters: dict[str, int],
    unacked: tuple[int, float],
) -> dict[str, Any]:
    tallies = {kind: thread.tally.as_dict() for kind, thread in traffic.items()}
    duplicated: Counter[str] = Counter()
    for (_, task), times in runs.items():
        duplicated[task] += max(times - 1, 0)  # run again: a redelivery after a kill
    tallies["bulk"]["versions"] = dict(traffic["bulk"].versions)
    ok = all(t["wrong"] == 0 and t["lost"] == 0 for t in tallies.values()) and not exits
    ok = ok and unacked[0] == 0  # nothing parked in `unacked` after the faults
    return {
        "minutes": plan.minutes,
        "faults": faults,
        **tallies,
        "executions": sum(runs.values()),
        "duplicated_executions": sum(duplicated.values()),
        "duplicated_by_task": dict(duplicated),
        "peak_rss_mb": round(max((max(v) for v in rss.values()), default=0.0), 1),
        "peak_rss_growth_mb": round(max((max(v) - v[0] for v in rss.values()), default=0.0), 1),
        "worker_exits": exits,
        "dead_letters": letters,
        "unacked_left": unacked[0],
        "unacked_clear_s": unacked[1],
        "ok": ok,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a table, for people."""
    lines = ["kind     sent  answered  wrong  lost  errors  resent  send_retries"]
    for kind in ("stream", "images", "bulk"):
        t = report[kind]
        errors = sum(t["errors"].values())
        lines.append(
            f"{kind:<8} {t['sent']:>5} {t['answered']:>9} {t['wrong']:>6} {t['lost']:>5} "
            f"{errors:>7} {t['resent']:>7} {t['send_retries']:>13}"
        )
    lines.append(
        f"faults {len(report['faults'])}; executions {report['executions']}, duplicated "
        f"{report['duplicated_executions']} {report['duplicated_by_task']}; "
        f"worker peak RSS {report['peak_rss_mb']} MB "
        f"(growth {report['peak_rss_growth_mb']} MB); bulk outputs by model version "
        f"{report['bulk']['versions']}; workers that exited on their own "
        f"{len(report['worker_exits'])}; dead letters {sum(report['dead_letters'].values())}; "
        f"unacked left {report['unacked_left']} (clear {report['unacked_clear_s']} s after); "
        f"{'OK' if report['ok'] else 'FAILED'}"
    )
    return "\n".join(lines)
