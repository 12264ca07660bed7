"""The reader: gradient-boosted trees, stored as JSON (written by run R1's export.py from scikit-learn's
GradientBoostingClassifier). Evaluated here in numpy so that the app needs neither scikit-learn nor a pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .candidates import FEATURES


class Trees:
    def __init__(self, path: Path) -> None:
        doc = json.loads(Path(path).read_text())
        if tuple(doc["features"]) != FEATURES:
            raise ValueError(f"{path}: the reader's features {doc['features']} are not the app's {FEATURES}")
        self.init, self.rate = float(doc["init"]), float(doc["rate"])
        # (left, right, feature, threshold, value) of each tree, as arrays once, not on every request
        self.trees = [tuple(np.asarray(t[k]) for k in ("left", "right", "feature", "threshold", "value"))
                      for t in doc["trees"]]

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(n, FEATURES) -> the probability that each candidate is a true lesion."""
        raw = np.full(len(x), self.init)
        rows = np.arange(len(x))
        for left, right, feature, threshold, value in self.trees:
            node = np.zeros(len(x), int)
            while (inner := left[node] != -1).any():
                go_left = x[rows, feature[node]] <= threshold[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            raw += self.rate * value[node]
        return 1 / (1 + np.exp(-raw))
