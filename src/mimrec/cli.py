"""The ``mimrec`` command line: one subcommand per stage, plus ``run`` for the whole pipeline.

User mistakes (bad config key, missing file or column, ...) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimrec import __version__
from mimrec.config import SET_EXAMPLES
from mimrec.errors import MimrecError

STAGES: tuple[tuple[str, str], ...] = (
    ("run", "Run the whole pipeline (data, pretrain, csft, index, train, eval) into --out. "
            "Under torchrun: data, pretrain and eval on rank 0, the rest shared by the ranks."),
    ("data", "Load and validate the dataset, build P1 samples into OUT/data."),
    ("pretrain", "Stage 1: adapt the item encoder to the domain and align its modalities "
                 "(OUT/data -> OUT/pretrain)."),
    ("csft", "Stage 2: fine-tune the encoder contrastively on behaviour pairs "
             "(OUT/pretrain -> OUT/csft). Runs under torchrun for data-parallel training."),
    ("index", "Representation Center: embed the catalogue with raw, stage-1 and C-SFT encoders "
              "(-> OUT/index)."),
    ("train", "Train the CTR models (ID-only DIN, CiUBM, ...) on OUT/data into OUT/ctr."),
    ("eval", "Compute test metrics of OUT/ctr and write OUT/report.{json,md,png}."),
)


SERVE_HELP = ("Serve a run's trained model over HTTP (FastAPI): POST /v1/score, POST /v1/items, "
              "GET /healthz, /metrics, /docs and a small page at /.")


INIT_HELP = ("Inspect the tables of DATA_DIR and write a commented config for them: text "
             "columns, categorical features, image and attributes when present, each choice "
             "explained. Then: mimrec run CONFIG --out runs/NAME.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per stage."""
    parser = argparse.ArgumentParser(
        prog="mimrec",
        description="Multi-modal content interest modelling for CTR prediction. Each stage reads "
                    "the previous stage's artifact under --out and writes its own next to it.",
    )
    parser.add_argument("--version", action="version", version=f"mimrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in STAGES:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", type=Path, nargs="?", default=None,
                       help="pipeline config (TOML), e.g. configs/movielens.toml or one written by "
                            "`mimrec init`; optional once OUT/config.toml exists (the first stage "
                            "run into OUT writes it)")
        p.add_argument("--out", type=Path, required=True, help="run folder holding stage artifacts")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value (repeatable), e.g. "
                            + ", ".join(f"--set {e}" for e in SET_EXAMPLES)
                            + "; lists as [a, b] or a,b, strings quoted or bare")
        if name == "train":
            p.add_argument("--replace", action="store_true",
                           help="drop the models already in OUT/ctr that this run does not "
                                "train (default: keep them)")
    init = sub.add_parser("init", help=INIT_HELP, description=INIT_HELP)
    init.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                      help="folder with interactions, items and optional users tables "
                           "(.parquet or .csv)")
    init.add_argument("--out", type=Path, default=None, metavar="CONFIG",
                      help="where to write the config (default: ./<DATA_DIR name>.toml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing CONFIG")
    serve = sub.add_parser(
        "serve", help=SERVE_HELP, description=SERVE_HELP + " Item writes (POST /v1/items) need "
        "the bearer token set in the environment variable MIMREC_API_TOKEN; without it they are "
        "refused. Users' data and /metrics need MIMREC_READ_TOKEN or MIMREC_API_TOKEN.")
    serve.add_argument("run", type=Path, help="a finished run folder, e.g. runs/demo")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--model", default=None, metavar="NAME",
                       help="model to serve: a model name (ciubm) or name-seedK (ciubm-seed1); "
                            "default: the valid-best model (DIN unless content did better on valid)")
    serve.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads per forward pass (default 1; 0 = torch's default)")
    serve.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                       help="server processes (default: 2, or 1 on a 1-core machine); items added "
                            "through one are scored by all from their next request")
    serve.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=[],
                       metavar="NAME",
                       help="a host name requests may name in their Host header (repeatable; "
                            "'*' = any); default: localhost, 127.0.0.1, ::1 and the --host")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per request (client, method, path, status) on stderr "
                            "(default: off)")
    add_store_parser(sub)
    return parser


STORE_HELP = ("Look after a run's Representation Centers (LanceDB tables): list versions, gc, "
              "rollback, migrate stores of the Arrow-file format, build the ANN index.")


def add_store_parser(sub: argparse._SubParsersAction) -> None:
    """``mimrec store {versions,gc,rollback,migrate,ann} RUN``."""
    store = sub.add_parser("store", help=STORE_HELP, description=STORE_HELP)
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("versions", "list the versions each store keeps"),
                         ("gc", "compact, re-index and keep the last --keep versions"),
                         ("rollback", "make --version V the latest version again"),
                         ("migrate", "convert Arrow-file stores (older mimrec) to LanceDB"),
                         ("ann", "build the ANN vector index of the similarity route "
                                 "(catalogues of 10,000+ items)")):
        p = actions.add_parser(action, help=text, description=text)
        p.add_argument("run", type=Path, help="a run folder (stores in RUN/index/) or a store")
        p.add_argument("--source", default=None, help="one store of the run (raw, csft, ...)")
        if action == "gc":
            p.add_argument("--keep", type=int, default=10, help="versions to keep (default 10)")
        if action == "rollback":
            p.add_argument("--version", type=int, required=True, dest="to_version",
                           help="the version to make the latest again")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from mimrec.serve.server import serve

            build_bundle(args.run)
            serve(args.run, args.host, args.port, args.model, args.threads, args.workers,
                  tuple(args.allowed_hosts), args.access_log)
        elif args.command == "store":
            from mimrec.store.commands import run_store_action

            run_store_action(args.action, args.run, args.source, getattr(args, "keep", 10),
                             getattr(args, "to_version", None))
        elif args.command == "init":
            init(args.data_dir, args.out, args.force)
        else:
            dispatch(args.command, args.config, args.overrides, args.out,
                     getattr(args, "replace", False))
    except MimrecError as exc:
        print(f"mimrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimrec: interrupted", file=sys.stderr)
        return 130
    return 0


def build_bundle(run: Path) -> None:
    """Write a run's serving bundle when it is missing or stale (a run of an earlier mimrec),
    saying so once; the service itself reads only the bundle and the store."""
    from mimrec.ctr.bundle_format import bundle_problem

    if run.is_dir() and bundle_problem(run) is not None:
        from mimrec.ctr.bundle_writer import ensure_serving_bundle

        print(f"mimrec: {ensure_serving_bundle(run)}", file=sys.stderr, flush=True)


def init(data_dir: Path, out: Path | None, force: bool) -> None:
    """Write a config for the tables in ``data_dir`` and say what it chose."""
    from mimrec.init_config import write_init_config

    out = out or Path(f"{data_dir.resolve().name or 'own_data'}.toml")
    if out.exists() and not force:
        raise MimrecError(f"{out} exists; choose another --out or pass --force to overwrite it")
    path, s = write_init_config(data_dir, out)
    print(f"wrote {path}: {s.items:,} items, {s.users:,} users, {s.events:,} events")
    print(f"  text: {', '.join(s.text_fields) or '-'}; item features: "
          f"{', '.join(s.item_features) or '-'}; user features: {', '.join(s.user_features) or '-'}")
    print(f"  image: {'on' if s.image else 'off'}; attributes: {'on' if s.attributes else 'off'}")
    print(f"next: mimrec run {path} --out runs/{path.stem}")


def dispatch(command: str, config: Path | None, overrides: list[str], out: Path,
             replace: bool = False) -> None:
    """Load the config and run one subcommand (heavy imports happen here, not at --help)."""
    from mimrec import pipeline
    from mimrec.run_config import resolve_run_config, write_run_config
    from mimrec.runlog import LoggedConsole, log_path

    if out.exists() and not out.is_dir():
        raise MimrecError(f"--out {out}: exists and is not a folder (a run folder holds one "
                          "folder per stage)")
    cfg = resolve_run_config(command, config, overrides, out)
    console = LoggedConsole(log_path(out), **({} if sys.stdout.isatty() else {"width": 160}))
    if os.environ.get("RANK", "0") == "0":  # under torchrun: worker 0 speaks for the run
        console.write_log(f"== mimrec {command} {config or out / 'config.toml'} --out {out}"
                          + "".join(f" --set {o}" for o in overrides))
    match command:
        case "run":
            pipeline.run_all(cfg, out, console)
        case "data":
            pipeline.stage_data(cfg, out, console)
        case "pretrain":
            pipeline.stage_pretrain(cfg, out, console)
        case "csft":
            pipeline.stage_csft(cfg, out, console)
        case "index":
            pipeline.stage_index(cfg, out, console)
        case "train":
            pipeline.stage_train(cfg, out, console, replace)
        case "eval":
            pipeline.stage_eval(cfg, out, console)
    write_run_config(out, cfg)  # once the stage has finished: a failed one changes nothing
