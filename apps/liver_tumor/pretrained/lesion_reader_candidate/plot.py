"""The picture for docs/model.md: run R1's reader, false positives against lesions found, tuning and test sets."""
import json

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def point(r):
    f = r["lesions_found"]
    return r["false_positives_per_study"], f["10 to 20 mm"]["found"] + f["20 mm and over"]["found"], r["visible_10mm"]["found"]


tune = json.load(open("runs/reader_out/tune/eval.json"))
held = json.load(open("runs/reader_out/test/eval_heldout.json"))
fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
for ax, data, title, of in ((axes[0], tune, "tuning phantoms (20, seed 2500): where 0.3 was chosen", 42),
                            (axes[1], held, "held-out phantoms (12, seed 2000): once, at 0.3", 51)):
    sweep = sorted((k for k in data if k.startswith("sweep_")), key=lambda k: float(k[6:]))
    if len(sweep) > 1:
        xs, ys = zip(*[point(data[k])[:2] for k in sweep])
        ax.plot(xs, ys, "-", color="0.7", zorder=1)
        seen = {}
        for k in sweep:
            seen.setdefault(point(data[k])[:2], []).append(k[6:])
        for j, ((x, y), names) in enumerate(seen.items()):
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4 if j % 2 else -10), fontsize=8, color="0.4")
    for key, label, style in (("shipped", "shipped model", "s"), ("union", "shipped + lesion network L2", "^"),
                              ([k for k in data if k.startswith("reader_")][0], "+ reader, rule's point (0.031)", "v"),
                              ("sweep_0.3", "+ reader at 0.3", "o")):
        x, y, v = point(data[key])
        ax.scatter([x], [y], marker=style, s=70, label=f"{label}: {y} found, {v} visible, {x:.2f} FP", zorder=2)
    ax.set_xlabel("false-positive lesions a study")
    ax.set_ylabel(f"true lesions of 10 mm or more found (of {of})")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig("docs/second-reader.png", dpi=90)
