"""A deterministic, realistic video-game sales dataset with the course's schema.

The course's CSV (critic_rating, eight product flags and unit_price ->
total_earnings) cannot be downloaded here, so we generate one with the same
columns and a similar range (about $30k to $300k): earnings grow with the
critic rating and with franchise and genre effects, and carry log-normal noise.
Same seed, same rows, on every machine.

    python -m inferq.tools.sample_data data/in.csv [--rows N] [--seed S]

writes a sample input for `inferq score` (the compose file's bulk run uses it); the
target column is kept, so predictions can be set beside the generated earnings.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from inferq.core.constants import COURSE_FEATURES, COURSE_TARGET

# Probability that each flag is set, and its multiplicative effect on units sold.
_FLAGS: dict[str, tuple[float, float]] = {
    "is_action": (0.35, 1.15),
    "is_exclusive_to_us": (0.15, 0.85),
    "is_portable": (0.20, 0.80),
    "is_role_playing": (0.25, 1.15),
    "is_sequel": (0.35, 1.20),
    "is_sports": (0.20, 1.10),
    "suitable_for_kids": (0.30, 1.08),
}
_PRICES = np.array([19.99, 29.99, 39.99, 49.99, 59.99])
_RATINGS = np.arange(1.0, 5.01, 0.5)
SAMPLE_ROWS = 100_000


def generate(n_rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Columns by name, in the course's order, target last."""
    rng = np.random.default_rng(seed)
    rating_p = np.array([1, 2, 4, 7, 10, 12, 10, 6, 3], dtype=float)
    cols: dict[str, np.ndarray] = {
        "critic_rating": rng.choice(_RATINGS, size=n_rows, p=rating_p / rating_p.sum())
    }
    units = 900.0 * (cols["critic_rating"] ** 0.6)
    for name, (p_set, effect) in _FLAGS.items():
        cols[name] = (rng.random(n_rows) < p_set).astype(np.int64)
        units = units * np.where(cols[name] == 1, effect, 1.0)
    cols["unit_price"] = rng.choice(_PRICES, size=n_rows, p=[0.1, 0.15, 0.2, 0.25, 0.3])
    # Cheaper games sell more copies, though not in proportion to the discount.
    units = units * (59.99 / cols["unit_price"]) ** 0.6
    noise = rng.lognormal(mean=0.0, sigma=0.08, size=n_rows)
    cols[COURSE_TARGET] = np.round(units * cols["unit_price"] * noise)
    return {name: cols[name] for name in (*COURSE_FEATURES, COURSE_TARGET)}


def write_csv(path: Path, n_rows: int, seed: int = 0) -> Path:
    cols = generate(n_rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(cols))
        for i in range(n_rows):
            writer.writerow([_fmt(name, cols[name][i]) for name in cols])
    return path


def _fmt(name: str, value: float) -> str:
    if name == "unit_price":
        return f"{value:.2f}"
    if name == "critic_rating":
        return f"{value:.1f}"
    return str(int(value))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m inferq.tools.sample_data",
        description="Write a sample products CSV (the course's columns, target included).",
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=SAMPLE_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    try:
        write_csv(args.path, args.rows, args.seed)
    except OSError as exc:  # a folder that cannot be written: a usage error, one line
        parser.exit(2, f"{parser.prog}: cannot write {args.path}: {exc.strerror}\n")
    print(f"{args.path}: {args.rows} rows")


if __name__ == "__main__":
    main()
