"""Run R1's reader as JSON (no pickle: sklearn-version free), checked against sklearn on its training candidates."""
import json
import pickle
import sys
from pathlib import Path

import numpy as np

sys.argv = [sys.argv[0], "x", "x"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reader import FEATURES, table  # noqa: E402

model, threshold = pickle.loads(Path("runs/reader_out/train/reader.pkl").read_bytes())
p0 = float(model.init_.class_prior_[1])
trees = []
for est in model.estimators_[:, 0]:
    t = est.tree_
    trees.append({"left": t.children_left.tolist(), "right": t.children_right.tolist(), "feature": t.feature.tolist(),
                  "threshold": t.threshold.tolist(), "value": t.value[:, 0, 0].tolist()})
doc = {"kind": "gradient-boosted trees, binary: p = sigmoid(init + rate * sum of leaf values)",
       "features": list(FEATURES), "init": float(np.log(p0 / (1 - p0))), "rate": model.learning_rate,
       "trees": trees, "rule_threshold": threshold, "chosen_threshold": 0.3}


def predict(doc, x):
    raw = np.full(len(x), doc["init"])
    for t in doc["trees"]:
        for k, row in enumerate(x):
            n = 0
            while t["left"][n] != -1:
                n = t["left"][n] if row[t["feature"][n]] <= t["threshold"][n] else t["right"][n]
            raw[k] += doc["rate"] * t["value"][n]
    return 1 / (1 + np.exp(-raw))


x, y, big, groups = table(Path("runs/reader_out/train"))
diff = np.abs(predict(doc, x) - model.predict_proba(x)[:, 1]).max()
print("max |json - sklearn| on", len(x), "candidates:", diff)
assert diff < 1e-9
Path("runs/reader_out/reader.json").write_text(json.dumps(doc))
