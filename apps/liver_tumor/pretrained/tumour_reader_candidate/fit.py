"""R2: fit the reader on the seed-3100 candidates, export to the app's JSON, check it. usage: fit.py CANDS.npz OUT_DIR"""
import json, sys
from pathlib import Path
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
sys.path.insert(0, "/work/main")
from lib.reader.candidates import FEATURES
from lib.reader.trees import Trees
d = np.load(sys.argv[1]); out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
x, y = d["x"], d["y"]
assert tuple(d["features"]) == FEATURES
model = GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8, random_state=0).fit(x, y)
p0 = float(model.init_.class_prior_[1])
trees = [{"left": e.tree_.children_left.tolist(), "right": e.tree_.children_right.tolist(),
          "feature": e.tree_.feature.tolist(), "threshold": e.tree_.threshold.tolist(),
          "value": e.tree_.value[:, 0, 0].tolist()} for e in model.estimators_[:, 0]]
doc = {"kind": "gradient-boosted trees, binary: p = sigmoid(init + rate * sum of leaf values)",
       "features": list(FEATURES), "init": float(np.log(p0 / (1 - p0))), "rate": model.learning_rate, "trees": trees}
(out / "reader.json").write_text(json.dumps(doc))
diff = np.abs(Trees(out / "reader.json").probability(x) - model.predict_proba(x)[:, 1]).max()
imp = {f: round(float(v), 3) for f, v in zip(FEATURES, model.feature_importances_)}
fit = {"candidates": int(len(y)), "true": int(y.sum()), "studies": int(len(set(d["g"]))), "max_json_vs_sklearn": float(diff),
       "importance": imp}
(out / "fit.json").write_text(json.dumps(fit, indent=1))
print(json.dumps(fit, indent=1))
assert diff < 1e-9
