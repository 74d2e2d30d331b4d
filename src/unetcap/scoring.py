"""DICE and BCE of a set (docs/design.md §8), the scores of a training run.

DICE is global over all pixels of a set, on predictions rounded at 0.5:
DICE = 2 sum(y * round(p)) / (sum(y) + sum(round(p))). round() is numpy's (halves to
even: p = 0.5 counts as background, like tf.round). When both the masks and the rounded
predictions are empty, DICE is 0/0 and is defined as 1.0 (nothing to find, nothing found).

BCE is the mean over all pixels of -(y log p + (1 - y) log(1 - p)), with p clipped to
[1e-7, 1 - 1e-7] like Keras, summed in float64.

numpy only: training scores with it, and so do the kept segmentations and the benchmarks.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # Keras' backend epsilon, the clip of p in BCE


def dice_counts(y, p) -> tuple[int, int]:
    """(sum(y * round(p)), sum(y) + sum(round(p))) of masks `y` (0/1) and probabilities `p`."""
    y = np.asarray(y).astype(bool, copy=False)
    hard = np.rint(np.asarray(p)) >= 1
    return int(np.count_nonzero(y & hard)), int(np.count_nonzero(y)) + int(np.count_nonzero(hard))


def dice_from_counts(intersection: int, total: int) -> float:
    """2 * intersection / total; 1.0 when total is 0 (empty masks, empty predictions)."""
    return 1.0 if total == 0 else 2.0 * intersection / total


def dice(y, p) -> float:
    """Global DICE of a whole set (see the module docstring)."""
    return dice_from_counts(*dice_counts(y, p))


def bce_sum(y, p) -> float:
    """Sum over pixels of the binary cross-entropy (float64, p clipped to [eps, 1 - eps])."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return float(-np.sum(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def bce(y, p) -> float:
    """Mean binary cross-entropy over all pixels of a set."""
    n = np.asarray(y).size
    return bce_sum(y, p) / n if n else float("nan")


class Score:
    """DICE and BCE of a set, accumulated batch by batch (same numbers as dice() and bce()
    over the whole set at once), and the soft Dice loss of the whole set,
    1 - (2 sum(y p) + 1) / (sum(y) + sum(p) + 1) on the probabilities (the `bce+dice`
    training loss's second term)."""

    def __init__(self):
        self.intersection = self.total = self.pixels = 0
        self.bce_total = 0.0
        self.soft = np.zeros(2)  # sum(y p), sum(y) + sum(p), float64

    def add(self, y, p) -> None:
        i, t = dice_counts(y, p)
        self.intersection += i
        self.total += t
        self.pixels += np.asarray(y).size
        self.bce_total += bce_sum(y, p)
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        self.soft += (np.sum(y * p), np.sum(y) + np.sum(p))

    @property
    def soft_dice_loss(self) -> float:
        return float(1.0 - (2.0 * self.soft[0] + 1.0) / (self.soft[1] + 1.0))

    @property
    def dice(self) -> float:
        return dice_from_counts(self.intersection, self.total)

    @property
    def bce(self) -> float:
        return self.bce_total / self.pixels if self.pixels else float("nan")
