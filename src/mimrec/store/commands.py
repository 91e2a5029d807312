"""``mimrec store ACTION RUN``: look after the Representation Centers of a run folder.

Actions: ``versions`` (list what each store keeps), ``gc`` (compact and keep the last ``--keep``
versions), ``rollback --version V`` (make V the latest again), ``migrate`` (convert stores of
the Arrow-file format in place) and ``ann`` (build the vector index the similarity route uses).
RUN is a run folder (its stores are ``RUN/index/<source>``) or a store folder itself;
``--source`` picks one store of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mimrec.errors import MimrecError
from mimrec.store.center import LEGACY_CURRENT, table_path


def is_store(folder: Path) -> bool:
    return table_path(folder).is_dir() or (folder / LEGACY_CURRENT).is_file()


def stores_of(run: Path, source: str | None) -> list[Path]:
    """The store folders RUN names: itself, ``RUN/index/<source>``, or every store under
    ``RUN/index``."""
    if is_store(run):
        return [run]
    index = run / "index"
    if source is not None:
        if not is_store(index / source):
            known = ", ".join(p.name for p in sorted(index.glob("*")) if is_store(p)) or "none"
            raise MimrecError(f"--source {source}: no store at {index / source} (stores: {known})")
        return [index / source]
    found = sorted(p for p in index.glob("*") if p.is_dir() and is_store(p))
    if not found:
        raise MimrecError(f"{run}: no store found (neither a store folder nor a run with "
                          "index/<source> stores)")
    return found


def run_store_action(action: str, run: Path, source: str | None = None, keep: int = 10,
                     version: int | None = None, echo: Callable[[str], None] = print) -> None:
    """Run one ``mimrec store`` action, printing one line per store."""
    from mimrec.store import retention
    from mimrec.store.migrate import is_legacy, migrate_store

    stores = stores_of(run, source)
    if action == "rollback":
        if len(stores) > 1:
            raise MimrecError(f"{run} holds {len(stores)} stores "
                              f"({', '.join(p.name for p in stores)}): name one with --source")
        if version is None:
            raise MimrecError("rollback needs --version V (see `mimrec store versions RUN`)")
        new = retention.rollback(stores[0], version)
        echo(f"{stores[0]}: version {version} is the latest again, as version {new}")
        return
    for store in stores:
        if action == "migrate":
            if not is_legacy(store):
                echo(f"{store}: already a LanceDB store, nothing to do")
                continue
            items, new = migrate_store(store)
            echo(f"{store}: migrated {items:,} items to LanceDB (version {new})")
        elif action == "ann":
            from mimrec.store.ann import build_ann_index

            echo(f"{store}: building an IVF-PQ index (cosine) ...")
            r = build_ann_index(store)
            echo(f"{store}: ANN index on {r['rows']:,} vectors ({r['partitions']} partitions, "
                 f"{r['sub_vectors']} PQ sub-vectors) in {r['seconds']:.1f} s")
        elif action == "gc":
            r = retention.gc(store, keep)
            echo(f"{store}: {r['versions_before']} -> {len(r['versions'])} versions kept "
                 f"({r['versions'][0]}..{r['latest']}), {r['bytes_before']:,} -> "
                 f"{r['bytes']:,} bytes")
        else:
            kept = retention.versions(store)
            listed = ", ".join(f"{v['version']} ({v['rows']:,} rows, {v['timestamp'][:19]})"
                               for v in kept)
            echo(f"{store}: {listed}")
