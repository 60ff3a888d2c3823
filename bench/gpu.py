#!/usr/bin/env python3
"""`inferq bench vision` and `inferq bench bulk` with settings for an accelerator.

    .venv/bin/python bench/gpu.py                       # sizes chosen for the device found
    .venv/bin/python bench/gpu.py --images 4096 --rows 4000000 --out gpu.json

Run it from a checkout with the project's Python and built models (`inferq models
build`). It asks TensorFlow, in a child process, which GPUs it sees; the benchmarks
then start their own Redis and workers as usual. With a GPU the batches are large
(64 images, 65,536 rows); without one it says "no GPU: CPU-only run" and keeps to the
CPU settings and small counts, so that it ends in a few minutes on two cores.
Every default can be raised on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DETECT = (
    "import json, tensorflow as tf; "
    "print(json.dumps([tf.__version__, [d.name for d in tf.config.list_physical_devices('GPU')]]))"
)


@dataclass(frozen=True)
class Sizes:
    images: int
    vision_batch: int
    vision_wait_ms: float
    rows: int
    max_batch: int
    chunk_rows: int


# A GPU pass costs about the same for 16 or 64 images, so larger batches are nearly free
# throughput; bulk chunks as large as a batch keep each message one forward pass.
GPU_SIZES = Sizes(
    images=2048,
    vision_batch=64,
    vision_wait_ms=20,
    rows=1_000_000,
    max_batch=65_536,
    chunk_rows=65_536,
)
# The README's CPU settings, with counts small enough for a quick check.
CPU_SIZES = Sizes(
    images=64, vision_batch=16, vision_wait_ms=10, rows=20_000, max_batch=8192, chunk_rows=16_384
)


def visible_gpus(env: dict[str, str]) -> tuple[str, list[str]]:
    """(TensorFlow's version, the GPUs it sees), asked in a child process so that this
    one never holds GPU memory while the workers run."""
    done = subprocess.run(
        [sys.executable, "-c", DETECT], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"bench/gpu.py: TensorFlow did not start:\n{done.stderr[-2000:]}")
    version, gpus = json.loads(done.stdout.strip().splitlines()[-1])
    return str(version), [str(g) for g in gpus]


def run_bench(kind: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One `inferq bench KIND --json`; its progress lines go to stderr as they come."""
    with tempfile.TemporaryDirectory(prefix="inferq-gpu-bench-") as tmp:
        out = Path(tmp) / f"{kind}.json"
        argv = [sys.executable, "-m", "inferq", "bench", kind, *args, "--json", "--out", str(out)]
        print(f"$ inferq bench {kind} {' '.join(args)} --json", file=sys.stderr, flush=True)
        done = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0 or not out.exists():
            sys.exit(f"bench/gpu.py: inferq bench {kind} exited {done.returncode}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def vision(sizes: Sizes, env: dict[str, str]) -> dict[str, Any]:
    env = env | {
        "INFERQ_VISION_MAX_BATCH_SIZE": str(sizes.vision_batch),
        "INFERQ_VISION_MAX_WAIT_MS": str(sizes.vision_wait_ms),
        # Two batches held: one running, one filling (more only waits in prefetch).
        "INFERQ_JOB_SLOTS": str(2 * sizes.vision_batch),
    }
    counts = ["--imagenet-images", str(sizes.images), "--phone-images", str(sizes.images // 8)]
    result = run_bench("vision", counts, env)
    for name, figures in result["sets"].items():
        print(
            f"vision {name}: {result['images'][name]} images, batch {result['batch_size']}: "
            f"bulk {figures['bulk_images_per_s']}, stream {figures['stream_images_per_s']}, "
            f"script {figures['script_images_per_s']}, raw model {figures['raw_images_per_s']} "
            f"images/s; stream / raw {figures['stream_to_raw']}, failed {figures['failed']}"
        )
    return result


def bulk(sizes: Sizes, env: dict[str, str]) -> dict[str, Any]:
    flags = ["--rows", str(sizes.rows), "--bulk-batch", str(sizes.max_batch)]
    result = run_bench("bulk", [*flags, "--chunk-rows", str(sizes.chunk_rows)], env)
    print(
        f"bulk: {result['rows']} rows, bulk pass {result['worker_bulk_batch_size']}, "
        f"chunks of {result['chunk_rows']}: CSV through Redis {result['queue_rows_per_s']:,} "
        f"rows/s, in process {result['in_process_rows_per_s']:,} rows/s "
        f"(ratio {result['ratio']}); Parquet {result['parquet_queue_rows_per_s']:,} vs "
        f"{result['parquet_in_process_rows_per_s']:,} rows/s; failed rows {result['failed_rows']}"
    )
    return result


def missing_models(env: dict[str, str]) -> list[str]:
    models_dir = ROOT / env.get("INFERQ_MODELS_DIR", "models")
    needed = [
        ROOT / env.get("INFERQ_REGRESSOR_PATH", "models/regressor.h5"),
        models_dir / "efficientnet_lite0.h5",
    ]
    return [str(p) for p in needed if not p.exists()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, help="vision jobs (GPU 2048, CPU 64)")
    parser.add_argument("--vision-batch", type=int, help="images per pass (GPU 64, CPU 16)")
    parser.add_argument("--rows", type=int, help="bulk rows (GPU 1,000,000, CPU 20,000)")
    parser.add_argument(
        "--max-batch", type=int, help="bulk pass size, INFERQ_BULK_BATCH_SIZE (GPU 65536, CPU 8192)"
    )
    parser.add_argument("--chunk-rows", type=int, help="rows per chunk (GPU 65536, CPU 16384)")
    parser.add_argument("--only", choices=["vision", "bulk"], help="run one benchmark")
    parser.add_argument("--out", type=Path, help="also write every result here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # Each benchmark runs TensorFlow in two processes (worker, then in-process baseline);
    # without memory growth the first would map the whole GPU.
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    missing = missing_models(env)
    if missing:
        print(f"bench/gpu.py: missing {', '.join(missing)}: run `inferq models build`")
        return 2
    version, gpus = visible_gpus(env)
    defaults = GPU_SIZES if gpus else CPU_SIZES
    sizes = Sizes(
        images=args.images or defaults.images,
        vision_batch=args.vision_batch or defaults.vision_batch,
        vision_wait_ms=defaults.vision_wait_ms,
        rows=args.rows or defaults.rows,
        max_batch=args.max_batch or defaults.max_batch,
        chunk_rows=args.chunk_rows or defaults.chunk_rows,
    )
    print(
        f"TensorFlow {version}: " + (f"GPU {', '.join(gpus)}" if gpus else "no GPU: CPU-only run")
    )
    report: dict[str, Any] = {"tensorflow": version, "gpus": gpus, "sizes": asdict(sizes)}
    if args.only in (None, "vision"):
        report["vision"] = vision(sizes, env)
    if args.only in (None, "bulk"):
        report["bulk"] = bulk(sizes, env)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
