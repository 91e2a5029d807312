"""The Python API on a finished run (README "Python API"): score, embed, look up, report.

Usage: python examples/python_api.py runs/demo
"""

import sys

import numpy as np
import pandas as pd

import mimrec

run = mimrec.load_run(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
print(run)

# click probabilities of five catalogue items for a user who engaged with five others
ids = run.items["item_id"].tolist()
history, candidates = ids[:5], ids[5:10]
scores = run.score(history, candidates)
print("scores:", np.round(scores, 4).tolist())

# content vectors of a new item, by the encoder that built the Representation Center
new = pd.DataFrame({"item_id": ["new-1"], "title": ["A space comedy"], "year": ["2026"],
                    "genres": [["Comedy", "Sci-Fi"]]})
vector = run.encode_items(new)
print("new item vector:", vector.shape)

# the stored vectors of the candidates, and the one closest in content to the new item
stored = run.store.lookup(candidates)
print("stored vectors:", stored.shape)
print("candidate closest to new-1:", candidates[int(np.argmax(stored @ vector[0]))])

# the report of `mimrec eval`
report = run.report
best = report["valid_best"]
print("valid-best model:", best, "test AUC", round(report["models"][best]["auc"], 4))
