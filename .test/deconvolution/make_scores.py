"""Write scores.csv: four cell-type scores per spot of the scenario's simulated section, smooth over space.

Run from this folder: python make_scores.py (deterministic; the spots are those rule simulate_demo makes).
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from s3r.simulate_demo import simulate_demo

spec = yaml.safe_load(Path("config/config.yaml").read_text())["demo"]["tissue"]
with tempfile.TemporaryDirectory() as tmp:
    paths = {k: f"{tmp}/{k}" for k in ("x_csv", "y_csv", "coords_csv")}
    simulate_demo(spec, **paths, h5ad=f"{tmp}/tissue.h5ad")
    coords = pd.read_csv(paths["coords_csv"], index_col=0)
rng = np.random.default_rng(0)
xy = coords.to_numpy()
centres = np.array([[0.2, 0.2], [0.8, 0.3], [0.3, 0.8], [0.7, 0.8]])
logits = -8.0 * ((xy[:, None, :] - centres[None]) ** 2).sum(-1) + 0.2 * rng.normal(size=(len(xy), 4))
scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
pd.DataFrame(scores.round(6), index=coords.index, columns=["typeA", "typeB", "typeC", "typeD"]).to_csv("scores.csv")
