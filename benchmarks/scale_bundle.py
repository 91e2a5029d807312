"""A copy of a finished run whose store holds a catalogue of ``items`` more items (synthetic).

For the serving benchmark at catalogue scale (``bench_serve.py --scale-items``): the run's
serving bundle, encoder and model are kept as trained; its Representation Center gets, besides
the run's own items, ``items`` synthetic ones: ids ``syn-<k>`` for the items of
``make_scale_data.make_items`` (the scale generator's catalogue) and random normal vectors of the
store's dim (synthetic vectors: nothing was encoded; a text encoder on 2 cores would take hours
for a million titles). The served model scores them through their content like any item added
after training. Written once (a marker file names the size and seed) and reused.

Usage: python benchmarks/scale_bundle.py --run runs/demo --items 1000000 --out runs/demo-1m
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from mimrec.ctr.bundle_format import bundle_dir, read_manifest
from mimrec.store.center import RepresentationCenter, write_version

MARKER = "scale_bundle.json"
SYNTHETIC = "synthetic: ids from make_scale_data.make_items, random normal vectors"


def synthetic_ids(items: int, seed: int) -> np.ndarray:
    """``syn-<item_id>`` for the catalogue the scale generator writes with these arguments."""
    from make_scale_data import make_items, movielens_vocabulary  # benchmarks/ is on sys.path

    table, _ = make_items(items, movielens_vocabulary(), np.random.default_rng(seed))
    return np.char.add("syn-", table.column("item_id").to_numpy().astype(str))


def build(run: Path, items: int, out: Path, seed: int = 0) -> Path:
    """``out``: a copy of ``run`` whose served model's store also holds ``items`` synthetic
    items. Returns ``out`` (reused when its marker matches)."""
    wanted = {"run": str(run.resolve()), "items": items, "seed": seed, "vectors": SYNTHETIC}
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return out
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(run, tmp, ignore=shutil.ignore_patterns(".bench_serve"))
    manifest = read_manifest(bundle_dir(tmp))
    store = next(manifest.path(m.store) for m in manifest.models.values() if m.store)
    center = RepresentationCenter(store)
    start = time.perf_counter()
    ids = synthetic_ids(items, seed)
    vectors = np.random.default_rng(seed + 1).normal(size=(items, center.dim)).astype(np.float32)
    write_version(store, np.concatenate([center.ids, ids]),
                  np.concatenate([center.vectors, vectors]), center.info)
    print(f"scale bundle: {len(center):,} run items + {items:,} synthetic items x {center.dim} "
          f"in {store} ({time.perf_counter() - start:.0f} s)", flush=True)
    (tmp / MARKER).write_text(json.dumps(wanted, indent=2))
    tmp.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.run, args.items, args.out, args.seed)


if __name__ == "__main__":
    main()
