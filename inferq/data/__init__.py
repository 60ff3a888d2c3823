"""Sample data shipped with inferq (photos for the demo, benchmark and tests)."""

from importlib import resources
from pathlib import Path

SAMPLE_IMAGES = ("chelsea", "coffee", "astronaut")


def sample_image(name: str) -> Path:
    """Path of a bundled JPEG (an installed package file, never downloaded)."""
    return Path(str(resources.files("inferq.data").joinpath("images", f"{name}.jpg")))
