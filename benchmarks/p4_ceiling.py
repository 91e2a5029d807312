"""P4: how much can content add to the run's DIN at most? Bounds from the simulation's truth.

P4's click logit is ``log(10 a_u[class]) + w_u . z_i / sqrt(8) + q_i + b_u - 0.5``
(``shared/protocol.md``). DIN has the class (a categorical feature), the user ID and the item ID;
what only content can add is the style term ``w_u . z_i`` (z_i: the pixels' first 8 principal
components; w_u: the user's hidden taste), and for cold items nothing of the appeal q_i, which
content does not carry. This script re-simulates the run's world (same seed and sizes) and, on
the run's DIN valid and test predictions, measures what adding a style feature gains, each
combined with DIN's logit by a logistic regression fitted on the even users and scored on the
odd ones (so the gain is out of sample):

1. ``exact style``: the true ``w_u . z_i / sqrt(8)``: what no model can know; a ceiling.
2. ``taste from train x true z``: w_u estimated from the user's train impressions (clicks minus
   non-clicks, weighted by the true class-centred z): the best a user x content model could
   learn from this data if the content vectors carried the style exactly.
3. ``taste from train x <store>``: the same with z read linearly (ridge, fitted on the warm
   items) from each of the run's stores: what the run's vectors allow.

It also prints how much of z each store carries (ridge R^2 on held-out items, with the class
one-hot, against the class alone). Needs the run's ``data/``, ``index/`` and
``ctr/predictions.npz`` with a ``din-seed<S>`` model. Prints and writes JSON; never asserts.

Usage: python benchmarks/p4_ceiling.py --run RUN [--seed 0] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score

from mimrec.config import load_config
from mimrec.data.fashion import FASHION_DIR, load_fashion_mnist
from mimrec.data.p4 import STYLE_DIMS, simulate
from mimrec.data.samples import TEST, TRAIN, VALID
from mimrec.data.stage import read_data
from mimrec.store.center import RepresentationCenter

CLASSES = 10


def class_centred(x: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Rows minus their class's mean row. Shapes: (I, S), (I,) -> (I, S)."""
    means = np.stack([x[cls == c].mean(0) for c in range(CLASSES)])
    return x - means[cls]


def taste_from_train(samples, style: np.ndarray, n_users: int) -> np.ndarray:
    """Each user's taste estimate: mean of (label - 0.5) x the item's style over the user's
    train impressions. Shapes: style (I, S) -> (U, S)."""
    rows = np.flatnonzero(samples.split == TRAIN)
    y = samples.label[rows] - 0.5
    acc = np.zeros((n_users, style.shape[1]))
    np.add.at(acc, samples.user[rows], y[:, None] * style[samples.item[rows]])
    count = np.bincount(samples.user[rows], minlength=n_users)[:, None]
    return acc / np.maximum(count, 1)


def gains(din_prob: np.ndarray, feature: np.ndarray, label: np.ndarray, user: np.ndarray,
          cold: np.ndarray) -> dict:
    """AUC of DIN and of DIN's logit + the feature (logistic fit on even users, scored on odd
    ones), overall and on the cold rows, both on the odd users."""
    p = np.clip(din_prob, 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))
    x = np.column_stack([logit, feature])
    fit_rows, score_rows = user % 2 == 0, user % 2 == 1
    combined = LogisticRegression().fit(x[fit_rows], label[fit_rows]).decision_function(x)
    out = {}
    for name, rows in (("all", score_rows), ("cold", score_rows & cold)):
        before = roc_auc_score(label[rows], logit[rows])
        after = roc_auc_score(label[rows], combined[rows])
        out[name] = {"din": before, "with_feature": after, "gain": after - before,
                     "rows": int(rows.sum())}
    return out


def run_world(run: Path):
    """The run's config, data artifact and re-simulated P4 world, with the maps from artifact
    item rows and user indices to the world's rows."""
    cfg = load_config(run / "config.toml", [])
    if cfg.data.dataset != "p4":
        raise SystemExit(f"{run}: data.dataset is {cfg.data.dataset!r}, not 'p4'")
    data = read_data(run / "data")
    images, labels = load_fashion_mnist("train", cfg.data.path or FASHION_DIR)
    world = simulate(images, labels, cfg.data.p4)
    row_of = {str(r): j for j, r in enumerate(world.source_row)}
    item_ids = data.items["item_id"].astype(str).to_numpy()
    world_row = np.array([row_of[i] for i in item_ids])  # artifact item -> simulated item
    user_world = np.asarray(data.samples.user_ids).astype(int)  # artifact user -> simulated user
    return cfg, data, world, world_row, user_world


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="the DIN seed whose predictions to read")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    _, data, world, world_row, user_world = run_world(args.run)
    s = data.samples
    item_ids = data.items["item_id"].astype(str).to_numpy()
    style, cls = world.style[world_row], world.item_class[world_row]
    n_users = len(user_world)
    warm = data.items["launch_day"].to_numpy() == 0
    onehot = np.eye(CLASSES)[cls]

    result: dict = {"run": str(args.run), "seed": args.seed, "style_r2": {}, "bounds": {}}
    rng = np.random.default_rng(0)
    order = rng.permutation(len(style))
    fit_items, held_items = order[: int(0.75 * len(order))], order[int(0.75 * len(order)):]
    class_only = Ridge(alpha=1.0).fit(onehot[fit_items], style[fit_items]).score(
        onehot[held_items], style[held_items])
    result["style_r2"]["class only"] = class_only
    estimates = {"true z": class_centred(style, cls)}
    for store in ("raw", "pretrain", "csft"):
        folder = args.run / "index" / store
        if not folder.is_dir():
            continue
        vectors = RepresentationCenter(folder).lookup(item_ids).astype(np.float64)
        x = np.hstack([vectors, onehot])
        result["style_r2"][store] = Ridge(alpha=1.0).fit(x[fit_items], style[fit_items]).score(
            x[held_items], style[held_items])
        read = Ridge(alpha=1.0).fit(x[warm], style[warm]).predict(x)  # warm items only
        estimates[store] = class_centred(read, cls)
    tastes = {name: taste_from_train(s, z, n_users) for name, z in estimates.items()}

    predictions = np.load(args.run / "ctr" / "predictions.npz")
    for split, name in ((VALID, "valid"), (TEST, "test")):
        rows = np.flatnonzero(s.split == split)
        label, user, item = s.label[rows], s.user[rows], s.item[rows]
        cold = s.bucket[rows] == 0
        din = predictions[f"din-seed{args.seed}/{name}"]
        features = {"exact style": (world.taste[user_world[user]] * style[item]).sum(1)
                    / np.sqrt(STYLE_DIMS)}
        for source, z in estimates.items():
            features[f"taste from train x {source}"] = (tastes[source][user] * z[item]).sum(1)
        result["bounds"][name] = {f: gains(din, v, label, user, cold) for f, v in features.items()}

    print(f"style z (8 dims) read from each store, ridge R^2 on held-out items (class one-hot "
          f"included; class alone {class_only:.3f}):")
    for store, r2 in result["style_r2"].items():
        print(f"  {store:<12} {r2:.3f}")
    for name, bounds in result["bounds"].items():
        print(f"{name} (odd users): AUC gain over DIN, overall / cold")
        for feature, g in bounds.items():
            print(f"  {feature:<34} {g['all']['din']:.4f} -> {g['all']['with_feature']:.4f} "
                  f"({g['all']['gain']:+.4f}) / cold {g['cold']['din']:.4f} -> "
                  f"{g['cold']['with_feature']:.4f} ({g['cold']['gain']:+.4f}, "
                  f"{g['cold']['rows']} rows)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
