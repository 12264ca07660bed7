"""Run S1: R1's reader refitted on the extracted candidates (extract.py) of the seed-3100 phantoms, exported to the
app's JSON and checked against sklearn. usage: fit.py EXTRACTED OUT_DIR"""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

sys.path.insert(0, "/work/main")
from lib.reader.candidates import FEATURES  # noqa: E402
from lib.reader.trees import Trees  # noqa: E402

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rows = [(s.name, r) for s in sorted(src.iterdir()) if (s / "cands.json").exists()
        for r in json.loads((s / "cands.json").read_text())["rows"]]
x = np.array([[r[f] for f in FEATURES] for _, r in rows])
y = np.array([r["true"] for _, r in rows])
model = GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                   random_state=0).fit(x, y)
p0 = float(model.init_.class_prior_[1])
trees = [{"left": e.tree_.children_left.tolist(), "right": e.tree_.children_right.tolist(),
          "feature": e.tree_.feature.tolist(), "threshold": e.tree_.threshold.tolist(),
          "value": e.tree_.value[:, 0, 0].tolist()} for e in model.estimators_[:, 0]]
doc = {"kind": "gradient-boosted trees, binary: p = sigmoid(init + rate * sum of leaf values)",
       "features": list(FEATURES), "init": float(np.log(p0 / (1 - p0))), "rate": model.learning_rate, "trees": trees}
(out / "reader.json").write_text(json.dumps(doc))
diff = float(np.abs(Trees(out / "reader.json").probability(x) - model.predict_proba(x)[:, 1]).max())
fit = {"candidates": int(len(y)), "true": int(y.sum()),
       "true_10mm": int(sum(r["true"] and r["lesion_mm"] >= 10 for _, r in rows)),
       "studies": len({s for s, _ in rows}), "max_json_vs_sklearn": diff,
       "importance": {f: round(float(v), 3) for f, v in zip(FEATURES, model.feature_importances_)}}
(out / "fit.json").write_text(json.dumps(fit, indent=1))
print(json.dumps(fit, indent=1))
assert diff < 1e-9
