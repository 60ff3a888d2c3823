"""`inferq train`, `import-model`, `models build` and `schema`: the offline tools."""

from __future__ import annotations

from pathlib import Path

import click

from inferq.core.constants import COURSE_FEATURES, COURSE_TARGET
from inferq.core.tables import TableError
from inferq.errors import InferqError


@click.command()
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
    from inferq.tools.training import train as run_training

    try:
        report = run_training(csv_path, target, out, epochs=epochs, seed=seed, test_csv=test_csv)
    except TableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"saved {report.path} ({report.rows} rows, final loss {report.final_loss:.6f})")
    if report.test_mse_scaled is not None:
        click.echo(f"test MSE (scaled): {report.test_mse_scaled:.6f}")
        click.echo(f"test MAE: ${report.test_mae_usd:,.2f}")


@click.command("import-model")
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
    from inferq.tools.import_model import import_model as run_import

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


@click.group()
def models() -> None:
    """Build the models this project serves, offline."""


@models.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the files exist.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("models"))
def models_build(force: bool, directory: Path) -> None:
    """Sample data -> regressor.h5; packaged ImageNet weights -> efficientnet_lite0.h5."""
    from inferq.tools.models_build import build_classifier, build_regressor

    for line in [
        *build_regressor(directory, force=force),
        *build_classifier(directory, force=force),
    ]:
        click.echo(line)


@click.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("docs/schema"))
def schema(directory: Path) -> None:
    """Write the job contract as JSON Schema files."""
    from inferq.core.contract import write_schemas

    for path in write_schemas(directory):
        click.echo(str(path))


COMMANDS: list[click.Command] = [train, import_model, models, schema]
