"""The `inferq` command line. Commands stay thin: the work lives in modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from inferq.cli_bench import bench
from inferq.cli_bulk import score, score_images
from inferq.cli_settings import load_settings
from inferq.constants import COURSE_FEATURES, COURSE_TARGET
from inferq.errors import InferqError
from inferq.tabular import TableError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inferq")
def main() -> None:
    """inferq: batching inference workers on Celery and Redis."""


@main.command()
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", default=COURSE_TARGET, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("models/regressor.h5"))
@click.option("--epochs", default=50, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--test", "test_csv", type=click.Path(exists=True, path_type=Path))
def train(
    csv_path: Path, target: str, out: Path, epochs: int, seed: int, test_csv: Path | None
) -> None:
    """Train the course's network on CSV_PATH; save HDF5 with the scaler inside."""
    from inferq.training import train as run_training

    try:
        report = run_training(csv_path, target, out, epochs=epochs, seed=seed, test_csv=test_csv)
    except TableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"saved {report.path} ({report.rows} rows, final loss {report.final_loss:.6f})")
    if report.test_mse_scaled is not None:
        click.echo(f"test MSE (scaled): {report.test_mse_scaled:.6f}")
        click.echo(f"test MAE: ${report.test_mae_usd:,.2f}")


@main.command("import-model")
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--features", default=",".join(COURSE_FEATURES), show_default=True)
@click.option("--target", default=COURSE_TARGET, show_default=True)
@click.option("--target-min", type=float, required=True, help="Scaler min_ (course: -0.1159).")
@click.option(
    "--target-scale", type=float, required=True, help="Scaler scale_ (course: 0.0000036968)."
)
@click.option("--feature-min", help="Comma-separated min_ per feature; omit for pre-scaled inputs.")
@click.option("--feature-scale", help="Comma-separated scale_ per feature.")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Write a copy here (default: in place)."
)
def import_model(
    model_path: Path,
    features: str,
    target: str,
    target_min: float,
    target_scale: float,
    feature_min: str | None,
    feature_scale: str | None,
    out: Path | None,
) -> None:
    """Record the scaler of a plain Keras HDF5 model (e.g. the course's trained_model.h5)."""
    from inferq.importing import import_model as run_import

    try:
        path = run_import(
            model_path,
            out or model_path,
            features=features.split(","),
            target=target,
            target_min=target_min,
            target_scale=target_scale,
            feature_min=feature_min,
            feature_scale=feature_scale,
        )
    except (InferqError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"recorded the scaler in {path}")


@main.group()
def models() -> None:
    """Build the models this project serves, offline."""


@models.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the files exist.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("models"))
def models_build(force: bool, directory: Path) -> None:
    """Sample data -> regressor.h5; packaged ImageNet weights -> efficientnet_lite0.h5."""
    from inferq.build import build_classifier, build_regressor

    for line in [
        *build_regressor(directory, force=force),
        *build_classifier(directory, force=force),
    ]:
        click.echo(line)


@main.command()
@click.option("--queues", default="regression", show_default=True, help="regression[,vision]")
@click.option(
    "--concurrency", default=1, show_default=True, help="Worker processes (one model copy each)."
)
@click.option("--max-batch-size", type=int, help="Rows per forward pass (INFERQ_MAX_BATCH_SIZE).")
@click.option(
    "--max-wait-ms", type=float, help="Batch fill wait from the first row (INFERQ_MAX_WAIT_MS)."
)
@click.option("--job-slots", type=int, help="Jobs held at once per process (INFERQ_JOB_SLOTS).")
@click.option("--hostname", "-n", help="Celery node name (default: distinct per process).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(
    queues: str,
    concurrency: int,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    job_slots: int | None,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Run batching workers (same as `celery -A worker worker -Q ...` with checks first)."""
    from inferq.worker_main import run_worker

    overrides = {
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "job_slots": job_slots,
    }
    for name, value in overrides.items():
        if value is not None:  # children and Celery's own config read the environment
            os.environ[f"INFERQ_{name.upper()}"] = str(value)
    sys.exit(run_worker(load_settings(), queues.split(","), concurrency, hostname, loglevel))


@main.command()
@click.option("--queues", default="regression", show_default=True, help="regression[,vision]")
@click.option(
    "--timeout-s",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="How long to wait for the workers' answers.",
)
def health(queues: str, timeout_s: float) -> None:
    """Exit 0 when Redis answers and each queue has a worker with its model loaded.

    Otherwise one line says why: exit 4 broker unreachable, 1 no worker or no model, 2 usage.
    """
    from inferq.health import run

    sys.exit(run(queues.split(","), timeout_s))


@main.command()
@click.option("--queues", default="regression,vision", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.option("--timeout-s", default=2.0, show_default=True, type=click.FloatRange(min=0.1))
def queues(queues: str, as_json: bool, timeout_s: float) -> None:
    """Jobs waiting per queue, and jobs held by workers: what an autoscaler scales on."""
    from inferq.queues import run

    sys.exit(run(queues.split(","), as_json, timeout_s))


@main.command()
@click.option("--json", "json_text", help="One row (object) or several (array) of raw features.")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timeout-s", default=60.0, show_default=True)
@click.option("--rows-per-job", default=256, show_default=True)
def predict(
    json_text: str | None, csv_path: Path | None, timeout_s: float, rows_per_job: int
) -> None:
    """Predict earnings through the workers: JSON lines, or CSV with earnings_usd added."""
    from inferq.predict_io import predict_csv, predict_json
    from producer.client import Client

    if (json_text is None) == (csv_path is None):
        raise click.UsageError("give exactly one of --json or --csv")
    try:
        with Client(load_settings()) as client:
            if json_text is not None:
                predict_json(client, json_text, sys.stdout, timeout_s)
            else:
                assert csv_path is not None
                predict_csv(client, csv_path, sys.stdout, timeout_s, rows_per_job)
    except (InferqError, TableError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "top_k", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("--timeout-s", default=120.0, show_default=True)
def classify(images: tuple[Path, ...], top_k: int, as_json: bool, timeout_s: float) -> None:
    """Classify image files through the vision workers (top-k ImageNet labels)."""
    from inferq.classify_io import classify_files
    from producer.client import Client

    with Client(load_settings()) as client:
        failed = classify_files(
            client, list(images), sys.stdout, top_k=top_k, as_json=as_json, timeout_s=timeout_s
        )
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("docs/schema"))
def schema(directory: Path) -> None:
    """Write the job contract as JSON Schema files."""
    from inferq.contract import write_schemas

    for path in write_schemas(directory):
        click.echo(str(path))


@main.command()
@click.option("--port", type=int, default=6379, show_default=True)
@click.option("--appendonly", is_flag=True, help="Persist with AOF.")
def redis(port: int, appendonly: bool) -> None:
    """Run the bundled redis-server in the foreground (for machines without Redis)."""
    from inferq.redis_server import RedisServer

    server = RedisServer(port, appendonly=appendonly).start()
    click.echo(f"INFERQ_REDIS_URL={server.url}  (Ctrl-C to stop)")
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@main.command()
def demo() -> None:
    """Start Redis (if INFERQ_REDIS_URL is unset) and a worker, predict a few games, stop."""
    from inferq.demo import run_demo

    sys.exit(run_demo(load_settings()))


main.add_command(score)
main.add_command(score_images)
main.add_command(bench)
