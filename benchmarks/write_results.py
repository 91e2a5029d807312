"""Compose ``benchmarks/RESULTS.md`` from the outputs ``run_all.py`` keeps under ``RUN/results``.

A free-text note on the conditions of the run (a shared machine, scripts run one by one) is
taken from ``RUN/results/notes.md`` when present. Sections of the existing file that this script
does not write (measurements made by hand, e.g. "1b. ... not from `make bench`") are kept, each
after the section it followed.

Usage: .venv/bin/python benchmarks/write_results.py [--run runs/bench]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from environment import environment  # benchmarks/ is this script's folder


def _json(res: Path, name: str) -> dict | None:
    path = res / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _text(res: Path, name: str) -> str:
    path = res / f"{name}.txt"
    return path.read_text().strip() if path.is_file() else ""


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "**missed**"


def quality_section(res: Path, name: str = "quality") -> list[str]:
    """The models side by side (mean ± std over seeds), the oracle where the protocol knows the
    true click probability, the bucket sizes, and CiUBM minus each peer with its paired-bootstrap
    interval, overall and per bucket, saying which differences the data resolves."""
    q = _json(res, name)
    if not q:
        return ["(not run)"]
    lines = ["| model | AUC | gAUC | LogLoss | AUC cold | AUC tail | AUC mid | AUC head | "
             "RelaImpr vs FuxiCTR DIN (tuned) |", "|---|---|---|---|---|---|---|---|---|"]
    for model, s in q["models"].items():
        lines.append(
            f"| {model} | {s['auc']['mean']:.4f} ± {s['auc']['std']:.4f} | "
            f"{s['gauc']['mean']:.4f} ± {s['gauc']['std']:.4f} | {s['logloss']['mean']:.4f} | "
            + " | ".join(f"{s['auc_' + b]['mean']:.4f}" for b in BUCKETS)
            + f" | {s.get('rela_impr_vs_fuxictr_tuned', float('nan')):+.2f}% |")
    oracle = q.get("oracle")
    if oracle:
        lines.append(f"| oracle (true click probability) | {oracle['auc']:.4f} | "
                     f"{oracle['gauc']:.4f} | {oracle['logloss']:.4f} | " + " | ".join(
                         f"{(oracle['buckets'].get(b) or {}).get('auc', float('nan')):.4f}"
                         for b in BUCKETS) + " | |")
    any_model = next(iter(q["models"].values()))
    lines += ["", f"Seeds {q['seeds']}; bucket sizes (test impressions): " + ", ".join(
        f"{b} {any_model['auc_' + b]['n']}" for b in BUCKETS)
        + f". Per-seed values are in `RUN/results/{name}.json`."]
    gaps = [f"{model} {s['oracle_gap_closed_vs_mimrec_din']:+.1%}"
            for model, s in q["models"].items() if "oracle_gap_closed_vs_mimrec_din" in s]
    if gaps:
        lines += ["", "Share of the mimrec DIN-to-oracle AUC gap closed: " + ", ".join(gaps) + "."]
    if q.get("ciubm_versus"):
        lines += ["", "mimrec CiUBM minus each peer (test; paired bootstrap over users, seed k "
                  "against seed k, 95%):", "",
                  "| peer | rows | ΔAUC [95%] | ΔgAUC [95%] | ΔAUC resolved |", "|---|---|---|---|---|"]
        for peer, r in q["ciubm_versus"].items():
            for bucket, b in [("all", r["all"]), *r["buckets"].items()]:
                if b is None:
                    continue
                lo, hi = b["delta_auc_interval"]
                glo, ghi = b.get("delta_gauc_interval", (float("nan"),) * 2)
                rows = f"{bucket} ({b['n']:,})" if "n" in b else bucket
                verdict = "yes" if lo > 0 or hi < 0 else "no (the interval holds 0)"
                lines.append(f"| {peer} | {rows} | {b['delta_auc']:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                             f"| {b['delta_gauc']:+.4f} [{glo:+.4f}, {ghi:+.4f}] | {verdict} |")
    return lines


def throughput_rows(name: str, t: dict | None) -> tuple[list[str], list[str]]:
    """Table rows of one throughput run and summary rows of its ratios."""
    if not t:
        return [], []
    rows = [f"| {model} ({t['threads']} thread{'s' * (t['threads'] > 1)}) | "
            f"{r['train_samples_per_second']:,.0f} | {r['predict_samples_per_second']:,.0f} |"
            for model, r in t.items() if isinstance(r, dict) and "train_samples_per_second" in r]
    summary = []
    for pair, r in t.get("ratios", {}).items():
        target = 3.0 if pair.startswith("mimrec din") else 1.5
        summary.append(f"| CTR training samples/s, {pair}, {t['threads']} thread(s), batch "
                       f"{t['batch_size']} | {r['train']:.2f}x | >= {target:.1f}x | "
                       f"{_verdict(r['train'], target)} | `{name}` |")
        summary.append(f"| CTR prediction samples/s, {pair}, {t['threads']} thread(s) | "
                       f"{r['predict']:.2f}x | - | - | `{name}` |")
    return rows, summary


def store_scale_rows(res: Path) -> list[str]:
    """Summary rows of ``bench_store_scale.py`` runs (the targets of issue 16 are set at 1M)."""
    rows = []
    for name in ("store_scale", "store_scale_1m"):
        s = _json(res, name)
        if not s:
            continue
        size = f"{s['items']:,} x {s['dim']}, synthetic"
        rows += [
            f"| store lookup of {s['batch']} ids vs numpy ({size}) | {s['lookup_vs_numpy']:.2f}x | "
            f">= 0.5x | {_verdict(s['lookup_vs_numpy'], 0.5)} | `{name}` |",
            f"| store 1-item upsert p50 / p99 ms ({size}; {s['adds']} upserts) | "
            f"{s['upsert_p50_ms']:.1f} / {s['upsert_p99_ms']:.1f} ms | <= 50 / 200 ms | "
            f"{'met' if s['upsert_p50_ms'] <= 50 and s['upsert_p99_ms'] <= 200 else '**missed**'}"
            f" | `{name}` |",
            f"| store disk after {s['adds']} upserts / table bytes ({size}) | "
            f"{s['disk_vs_table']:.3f}x | <= 1.2x | "
            f"{'met' if s['disk_vs_table'] <= 1.2 else '**missed**'} | `{name}` |"]
    return rows


def scale_section(result: dict | None) -> list[str]:
    """Rows of ``bench_scale.py``'s JSON (one size or ``{"sizes": [...]}``): synthetic data."""
    if not result:
        return []
    gib = 2.0**30
    lines = ["| events (synthetic) | users / items | data stage s | data peak RSS | "
             "DIN epoch samples/s | train peak RSS | data time vs first | rate vs first |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result.get("sizes", [result]):
        lines.append(
            f"| {r['events']:,} | {r['users']:,} / {r['items']:,} | {r['data_seconds']:.1f} | "
            f"{r['data_peak_rss'] / gib:.2f} GiB | {r['train_samples_per_s']:,.0f} | "
            f"{r['train_peak_rss'] / gib:.2f} GiB | "
            f"{r.get('data_time_ratio_vs_first', 1.0):.1f}x | "
            f"{r.get('train_rate_ratio_vs_first', 1.0):.2f}x |")
    return lines


BUCKETS = ("cold", "tail", "mid", "head")
QUALITY_TITLE = "1. Quality on P1 (test split, mimrec's metrics on every model's predictions)"
QUALITY_PROTOCOLS = (("quality_cold_v2", "1c. Quality on P1-cold v2 (test split, cold items "
                                         "launched with the valid period)"),
                     ("quality_p4", "1d. Quality on P4 (Fashion-MNIST photos, simulated "
                                    "behaviour with a known click probability)"))
THROUGHPUT_TITLE = "2. CTR throughput (same P1 data, same batch size, same torch threads)"
SECTION_TITLES = (("text_encoding", "3. Text encoding"),
                  ("store_lookup", "4. Representation Center lookups"),
                  ("sample_builder", "5a. Scaling: P1 sample building"),
                  ("ctr_scaling", "5b. Scaling: CTR training (one DIN epoch)"),
                  ("serve", "6. Serving load (benchmarks/bench_serve.py)"),
                  ("scale", "7. Scale: synthetic 1M / 10M events, data stage and one DIN epoch"))
COMMANDS_TITLE = "Commands and wall times"
GENERATED = {"Environment", "Summary", QUALITY_TITLE, THROUGHPUT_TITLE, COMMANDS_TITLE,
             "Note on this run", *(title for _, title in SECTION_TITLES + QUALITY_PROTOCOLS)}


def sections(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Markdown lines cut at each ``##`` / ``###`` heading: (title, the heading and its lines);
    the lines before the first heading come first with the title ""."""
    out: list[tuple[str, list[str]]] = [("", [])]
    for line in lines:
        m = re.match(r"#{2,3} (.*)", line)
        if m:
            out.append((m.group(1).strip(), []))
        out[-1][1].append(line)
    return out


def keep_hand_sections(generated: list[str], old: str) -> list[str]:
    """``generated`` with the sections of ``old`` that the generator does not write put back,
    each after the generated section it followed there (before "Commands and wall times" when
    that one is not written now)."""
    kept: dict[str, list[str]] = {}
    after = ""
    for title, chunk in sections(old.splitlines()):
        if title in GENERATED or not title:
            after = title
        else:
            kept.setdefault(after, []).extend(chunk)
    written = {title for title, _ in sections(generated)}
    out: list[str] = []
    for title, chunk in sections(generated):
        if title == COMMANDS_TITLE:  # whatever followed a section not written this time
            for key in [k for k in kept if k not in written]:
                out += kept.pop(key)
        out += chunk + kept.pop(title, [])
    return out


def write_results(run: Path, log: dict, env: list[str], out: Path) -> None:
    res = run / "results"
    here = str(Path.cwd()) + "/"  # commands as typed from the repository root
    log = {k: ({**v, "command": v["command"].replace(here, "")} if isinstance(v, dict) else v)
           for k, v in log.items()}
    summary = ["| benchmark | ratio (ours / reference) | target | | command |",
               "|---|---|---|---|---|"]
    tp_rows = []
    for name in ("throughput", "throughput_2threads"):
        rows, s = throughput_rows(name, _json(res, name))
        tp_rows += rows
        summary += s
    m = re.search(r"ratio ours/theirs\s*:\s*([\d.]+)", _text(res, "text_encoding"))
    if m:
        summary.append(f"| text encoding items/s vs sentence-transformers (same model, texts, "
                       f"threads) | {float(m.group(1)):.2f}x | >= 1.0x | "
                       f"{_verdict(float(m.group(1)), 1.0)} | `text_encoding` |")
    store = _json(res, "store_lookup") or {}
    for key, s in store.items():
        for op in ("lookup", "gather"):
            summary.append(f"| Representation Center `{op}` vs numpy fancy indexing "
                           f"({s['items']:,} x {s['dim']}, {key}) | {s[op]['ratio']:.2f}x | "
                           f">= 0.8x | {_verdict(s[op]['ratio'], 0.8)} | `store_lookup` |")
    summary += store_scale_rows(res)
    scaling = _json(res, "ctr_scaling")
    if scaling:
        ratios = ", ".join(f"{k}x: {v['time_ratio']:.1f}" for k, v in scaling["sizes"].items())
        summary.append(f"| CTR training epoch time vs 1x ({ratios}) | linear = "
                       f"{', '.join(scaling['sizes'])} | linear | see below | `ctr_scaling` |")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `benchmarks/run_all.py` (`make bench`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Every ratio compares against a "
        "reference measured in the same run; nothing here is asserted by the test suite. "
        "The machine may have been shared with other jobs while measuring (see the note at the "
        "end).",
        "",
        "## Environment",
        "",
        *env,
        "",
        "## Summary",
        "",
        *summary,
        "",
        f"## {QUALITY_TITLE}",
        "",
        *quality_section(res),
        "",
        *[line for name, title in QUALITY_PROTOCOLS if _json(res, name)
          for line in (f"## {title}", "", f"`{log[name]['command']}`" if name in log else "",
                       "", *quality_section(res, name), "")],
        f"## {THROUGHPUT_TITLE}",
        "",
        "| model | train samples/s | predict samples/s |",
        "|---|---|---|",
        *tp_rows,
        "",
        "FuxiCTR DIN (mimrec_shapes) = FuxiCTR's LongCTR DIN with mimrec's sizes (embedding 16, "
        "attention (64, 32) ReLU, tower (256, 128)): the like-for-like comparison. FuxiCTR DIN "
        "(tuned) = the configuration tuned on valid for P1 (embedding 16, tower 3 x 500, Dice "
        "attention [64], batch norm, dropout 0.2, embedding regularizer 0.1; batch 1,024), a "
        "larger model. Train rates include each library's data loading.",
        "",
    ]
    for name, title in SECTION_TITLES:
        if name in log or _text(res, name):
            lines += [f"## {title}", ""]
        if name in log:
            lines += [f"`{log[name]['command']}` ({log[name]['seconds']:.0f} s)", ""]
        if _text(res, name):
            lines += ["```", _text(res, name), "```", ""]
        if name == "scale" and _json(res, "scale"):
            lines += [*scale_section(_json(res, "scale")), ""]
    lines += [f"## {COMMANDS_TITLE}", "", "| benchmark | command | seconds |", "|---|---|---|"]
    lines += [f"| {k} | `{v['command']}` | {v['seconds']:.0f} |" for k, v in log.items()
              if isinstance(v, dict)]
    if "_total_seconds" in log:
        lines += ["", f"Total: {log['_total_seconds'] / 60:.1f} min."]
    notes = res / "notes.md"  # conditions of the measurement, written by whoever ran it
    lines += ["", "## Note on this run", "",
              notes.read_text().strip() if notes.is_file() else "No note: measured by `make bench`."]
    if out.is_file():
        lines = keep_hand_sections(lines, out.read_text())
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bench"))
    parser.add_argument("--results-md", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    log_path = args.run / "results" / "runs.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    write_results(args.run, log, environment(), args.results_md)


if __name__ == "__main__":
    main()
