"""Accuracy broken down: overall, by a key (writer, variant, group), and the commonest confusion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import NUM_CLASSES
from training.preprocess import to_model_input


@dataclass(frozen=True)
class Scores:
    """One network's answers against the labels."""

    labels: np.ndarray
    predicted: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.labels == self.predicted

    def accuracy(self, chosen: np.ndarray | None = None) -> float:
        correct = self.correct if chosen is None else self.correct[chosen]
        return float(correct.mean()) if correct.size else float("nan")

    def select(self, chosen: np.ndarray) -> "Scores":
        return Scores(self.labels[chosen], self.predicted[chosen])

    def by(self, keys: np.ndarray) -> dict[str, float]:
        """Accuracy per distinct key, in the keys' sorted order."""
        return {str(key): self.accuracy(keys == key) for key in np.unique(keys)}

    def worst_confusion(self, chosen: np.ndarray | None = None) -> tuple[int, int, int]:
        """(true digit, read as, how many times): the commonest mistake."""
        labels, predicted = self.labels, self.predicted
        if chosen is not None:
            labels, predicted = labels[chosen], predicted[chosen]
        counts = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        np.add.at(counts, (labels.astype(np.intp), predicted.astype(np.intp)), 1)
        np.fill_diagonal(counts, 0)
        true, read = np.unravel_index(int(np.argmax(counts)), counts.shape)
        return int(true), int(read), int(counts[true, read])


def score(model, pixels: np.ndarray, labels: np.ndarray, batch: int = 2048) -> Scores:
    """``model`` (anything with ``probabilities(batch)``, as an OnnxModel) on preprocessed pixels."""
    predicted = np.concatenate([
        model.probabilities(to_model_input(pixels[start:start + batch])).argmax(axis=1)
        for start in range(0, len(pixels), batch)
    ]) if len(pixels) else np.zeros(0, np.int64)
    return Scores(np.asarray(labels), predicted)
