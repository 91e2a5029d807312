"""Load benchmark of the scoring service: real HTTP on loopback, next to a trivial FastAPI endpoint.

Both servers run under uvicorn in subprocesses (mimrec with ``--workers 2``, its default on 2
cores; the trivial app with one worker); 8 client threads post the same
request (C candidates x H history items of the run's catalogue) over keep-alive connections for a
bounded time, in two phases per server:

* ``capacity``: closed loop, each client sends its next request when the last one is answered;
  gives the most requests/s the server sustains with 8 clients.
* ``at-rate``: open loop at a fixed offered rate (``--rate``, 200 requests/s split over the
  clients); latency is measured from each request's scheduled send time, so queueing counts
  (no coordinated omission). This is the latency a client sees at that load.

Printed per server and phase: requests, errors, requests/s, p50 / p99 latency; then the ratios
mimrec / trivial. Targets on 2 cores: >= 200 requests/s capacity, p99 <= 20 ms at 200 requests/s,
zero errors.

    .venv/bin/python benchmarks/bench_serve.py --run runs/demo --seconds 60

The reference endpoint parses the same JSON body into a dict and answers ``{"ok": true}``: the
cost of FastAPI + uvicorn + JSON without a model.

Live adds (``--adds-per-s R``): during mimrec's at-rate phase a writer posts ``R`` new items a
second (``POST /v1/items``: encoded, upserted, acknowledged with the store version that holds
the item). Visibility is read from the scoring traffic itself: every score answer names the
worker that gave it (``X-Mimrec-Worker``) and the store version it scored from, so for each
add and each worker, the first score request sent after the acknowledgement must have scored
from that version or a later one (else a stale score), and ``visible`` is the time from the
acknowledgement to that answer (each worker's next request). Besides, a checker asks every
worker ``GET /v1/items/{id}`` once per item, each on its own keep-alive connection (a
connection's worker is named by ``/healthz`` when it opens), and counts a first answer that is
not 200 as a stale read; ``checked`` is the time to those 200s. The checker asks one item after
another, so under load its times include its own queue of items waiting to be asked about.
The ``visible<=1s`` target: no worker scored an older version after an acknowledgement, and the
checker found every item on every worker within 1 s (``visible`` itself also counts any time a
worker had no score traffic, which says how requests were spread, not how fresh a worker is).
The resident memory (``VmRSS``, peak ``VmHWM``) of every process of the service is read from
``/proc`` at the end of the at-rate phase: the supervisor, each worker, the item writer they
share (the child process that encodes and stores adds) and multiprocessing's resource tracker;
the 2 GiB per worker target is their total divided by the workers.

At catalogue scale (``--scale-items N``): the run is copied with N synthetic items in its store
(``benchmarks/scale_bundle.py``: ids of the scale generator's catalogue, random vectors) and the
requests name items drawn from the whole catalogue.

    .venv/bin/python benchmarks/bench_serve.py --run runs/demo --model ciubm --seconds 60 \
        --adds-per-s 5 --scale-items 1000000 --json OUT.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

TRIVIAL_APP = """
from fastapi import FastAPI, Request
app = FastAPI()

@app.post("/v1/score")
async def score(request: Request) -> dict:
    body = await request.json()
    return {"ok": True, "n": len(body["candidates"])}

@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} not healthy after {timeout:.0f} s")


TOKEN = "bench-serve-token"  # the write token of the served process (POST /v1/items)


def start_mimrec(run: Path, port: int, workers: int = 1, model: str | None = None
                 ) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mimrec", "serve", str(run), "--port", str(port),
           "--workers", str(workers), *(("--model", model) if model else ())]
    env = {**os.environ, "MIMREC_API_TOKEN": TOKEN}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)  # workers die with the group


def start_trivial(port: int, folder: Path) -> subprocess.Popen:
    (folder / "trivial_app.py").write_text(TRIVIAL_APP)
    cmd = [sys.executable, "-m", "uvicorn", "trivial_app:app", "--port", str(port),
           "--log-level", "warning", "--no-access-log", "--app-dir", str(folder)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server and, for mimrec (its own process group), its worker processes too."""
    group = os.getpgid(proc.pid) == proc.pid if proc.poll() is None else False
    (os.killpg(proc.pid, signal.SIGTERM) if group else proc.terminate())
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        (os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill())
        proc.wait()
    if group:
        with contextlib.suppress(ProcessLookupError):  # a worker still loading ignores TERM
            os.killpg(proc.pid, signal.SIGKILL)


def load(port: int, body: bytes, clients: int, seconds: float, rate: float = 0.0,
         trace: list | None = None) -> dict:
    """``clients`` threads post ``body`` for ``seconds``: back to back (``rate`` 0), or each on a
    fixed schedule so that together they offer ``rate`` requests/s. Latencies in ms, from the
    scheduled send time when paced. With ``trace``, each answered request appends (sent, done,
    worker, store version) to it: when it was sent and answered (``perf_counter``), the worker
    that answered (``X-Mimrec-Worker``) and the store version it scored from."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    began = time.perf_counter()
    stop_at = began + seconds
    headers = {"Content-Type": "application/json"}
    interval = clients / rate if rate > 0 else 0.0

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        due = began + k * interval / clients
        while time.perf_counter() < stop_at:
            if interval:
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                start, due = due, due + interval
            else:
                start = time.perf_counter()
            sent = time.perf_counter()
            try:
                conn.request("POST", "/v1/score", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            done = time.perf_counter()
            latencies[k].append((done - start) * 1000)
            if ok and trace is not None:  # (list.append is atomic across threads)
                trace.append((sent, done, response.getheader("X-Mimrec-Worker"),
                              json.loads(answer)["store_version"]))
            errors[k] += not ok
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    lat = np.concatenate([np.asarray(x) for x in latencies])
    return {"requests": int(len(lat)), "errors": int(sum(errors)), "seconds": wall,
            "rps": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


def request_body(run: Path, candidates: int, history: int, spread: bool = False) -> bytes:
    """The request every client posts: the first items of the catalogue, or with ``spread``
    items drawn at random from the whole store (a catalogue-scale run)."""
    if spread:
        from mimrec.ctr.bundle_format import bundle_dir, read_manifest
        from mimrec.store.center import open_dataset

        manifest = read_manifest(bundle_dir(run))
        store = next(manifest.path(m.store) for m in manifest.models.values() if m.store)
        column = open_dataset(store).to_table(columns=["item_id"]).column("item_id")
        ids = np.asarray(column.to_numpy(zero_copy_only=False)).astype(str)
        items = ids[np.random.default_rng(0).choice(len(ids), candidates + history,
                                                      replace=False)].tolist()
    else:
        items = pd.read_parquet(run / "data" / "items.parquet")["item_id"].astype(str).tolist()
    if len(items) < candidates + history:
        raise SystemExit(f"{run}: catalogue has {len(items)} items, need {candidates + history}")
    return json.dumps({"history": items[:history],
                       "candidates": items[history:history + candidates]}).encode()


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def memory_of(pid: int) -> dict:
    """Resident and peak resident MiB of a process (``/proc/<pid>/status``; None: unreadable)."""
    from mimrec.serve.heap import rss_mib

    rss, peak = rss_mib(pid) or (None, None)
    return {"rss_mib": rss, "peak_rss_mib": peak}


def service_memory(pid: int, workers: int) -> dict:
    """Resident MiB of the service started as ``pid`` and every process under it (the
    supervisor, its workers, the item writer they share, multiprocessing's resource tracker),
    each named by its role, the total, and the total per worker (the 2 GiB target)."""
    from mimrec.processes import child_pids

    parts, todo = [], [pid]
    while todo:
        p = todo.pop()
        todo += child_pids(p)
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        role = ("writer" if "mimrec.serve.writer_process" in cmd
                else "worker" if "spawn_main" in cmd
                else "supervisor" if p == pid else "other")
        parts.append({"pid": p, "role": role, **memory_of(p)})
    total = sum(m["rss_mib"] or 0.0 for m in parts)
    return {"processes": parts, "total_rss_mib": total, "per_worker_mib": total / workers}


class LiveWriter:
    """Posts ``rate`` new items a second to the service and checks that every worker sees each
    acknowledged item on its next request (see the module docstring)."""

    def __init__(self, port: int, rate: float, workers: int, tag: str) -> None:
        self.port, self.rate, self.workers, self.tag = port, rate, workers, tag
        self.acked: list[float] = []  # ms of each acknowledged write
        self.write_errors = 0
        self.stale = 0  # a worker's first answer for an acknowledged item was not 200
        self.unchecked = 0  # items not answered by every worker within the checker's tries
        self.checked_ms: list[float] = []  # per (item, worker): ack -> the checker's 200
        self.acks: list[tuple[float, int]] = []  # (acknowledged at, store version it named)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()

    def run(self, seconds: float) -> None:
        checker = threading.Thread(target=self._check_all)
        checker.start()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        began = time.perf_counter()
        for k in range(int(seconds * self.rate)):
            delay = began + k / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            item = f"live-{self.tag}-{k}"
            body = json.dumps({"item_id": item, "title": f"live item {k} space drama",
                               "year": "2026", "genres": ["Drama"]}).encode()
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/items", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                ok = response.status == 201
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            acked = time.perf_counter()
            if ok:
                self.acked.append((acked - start) * 1000)
                self.acks.append((acked, json.loads(answer)["store_version"]))
                self._queue.put((item, acked))
            else:
                self.write_errors += 1
        conn.close()
        self._stop.set()
        checker.join()

    def _check_all(self) -> None:
        by_worker: dict[int, http.client.HTTPConnection] = {}  # one keep-alive connection each
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                item, acked = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._check(item, acked, by_worker)
        for conn in by_worker.values():
            conn.close()

    def _check(self, item: str, acked: float, by_worker: dict) -> None:
        """Ask every worker for ``item`` once, each on its own keep-alive connection (a worker
        is named by ``/healthz`` when its connection opens); a connection the service closes
        (``Connection: close``) is replaced by a fresh one, whichever worker takes it."""
        seen: dict[int, int] = {}
        for _ in range(40):
            if len(seen) >= self.workers:
                return
            pid = next((p for p in by_worker if p not in seen), None)
            if pid is None:  # no open connection to a worker not yet asked: open one
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                try:
                    _, health = _get(conn, "/healthz")
                    pid = json.loads(health)["worker"]
                except (OSError, http.client.HTTPException, KeyError, ValueError):
                    conn.close()
                    continue
                if pid in by_worker:  # the idle worker took it; try again a little later
                    conn.close()
                    time.sleep(0.01)
                    continue
                by_worker[pid] = conn
            conn = by_worker[pid]
            try:
                conn.request("GET", f"/v1/items/{item}")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                del by_worker[pid]
                continue
            if response.will_close:  # the service handed this connection over: reopen
                conn.close()
                del by_worker[pid]
            seen[pid] = status
            self.stale += status != 200
            if status == 200:
                self.checked_ms.append((time.perf_counter() - acked) * 1000)
        if len(seen) < self.workers:
            self.unchecked += 1

    def summary(self, trace: list) -> dict:
        """The writes, the checker's reads and, from ``trace`` (the score requests of
        :func:`load`), when each worker first scored from a version holding each item."""
        acked = np.asarray(self.acked or [np.nan])
        checked = np.asarray(self.checked_ms or [np.nan])
        seen = visibility(self.acks, trace)
        visible = np.asarray(seen.pop("visible_ms") or [np.nan])
        return {"rate": self.rate, "acknowledged": len(self.acked),
                "write_errors": self.write_errors,
                "write_p50_ms": float(np.percentile(acked, 50)),
                "write_p99_ms": float(np.percentile(acked, 99)),
                "stale_reads": self.stale, "unchecked_items": self.unchecked,
                "visible_p99_ms": float(np.percentile(visible, 99)),
                "visible_max_ms": float(visible.max()), **seen,
                "checked_p99_ms": float(np.percentile(checked, 99)),
                "checked_max_ms": float(checked.max())}


def visibility(acks: list[tuple[float, int]], trace: list) -> dict:
    """For each acknowledged add (time, store version V) and each worker that scored: the score
    requests that worker answered having been sent after the acknowledgement. The first of them
    must have scored from a version >= V (else it is a stale score); ``visible_ms`` is the time
    from the acknowledgement to the answer of the first one that did. A worker with no request
    sent after an add (the phase ended) counts in ``unseen``. ``visible_ms`` includes the time a
    worker had no score traffic: a busy worker closes keep-alive connections now and then
    (``mimrec.serve.protocol``), and the reconnects may all land on the other one for a while;
    ``traffic_gap_max_ms`` is the longest a worker went without a score request sent to it."""
    by_worker: dict[str, list[tuple[float, float, int]]] = {}
    for sent, done, worker, version in sorted(trace):
        by_worker.setdefault(worker, []).append((sent, done, version))
    visible, stale, unseen, gap = [], 0, 0, 0.0
    for worker_rows in by_worker.values():
        sent, done, version = (np.asarray(c) for c in zip(*worker_rows, strict=True))
        gap = max(gap, float(np.diff(sent).max()) if len(sent) > 1 else 0.0)
        for at, wanted in acks:
            first = int(np.searchsorted(sent, at))
            fresh = np.flatnonzero(version[first:] >= wanted)
            if first == len(sent) or not len(fresh):
                unseen += 1
                continue
            stale += int(fresh[0] > 0)
            visible.append((done[first + fresh[0]] - at) * 1000)
    return {"visible_ms": visible, "stale_scores": stale, "unseen": unseen,
            "scoring_workers": len(by_worker), "traffic_gap_max_ms": gap * 1000}


def at_rate_with_adds(port: int, body: bytes, args: argparse.Namespace) -> dict:
    """The at-rate phase with a :class:`LiveWriter` posting items at the same time."""
    writer = LiveWriter(port, args.adds_per_s, args.workers, str(port))
    thread = threading.Thread(target=writer.run, args=(args.seconds,))
    thread.start()
    trace: list = []
    result = load(port, body, args.clients, args.seconds, args.rate, trace)
    thread.join()
    result["live_adds"] = writer.summary(trace)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="finished run folder")
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per phase")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="offered requests/s of the at-rate phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load first")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="mimrec serve --workers")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--model", default=None, help="mimrec serve --model (default: the "
                        "valid-best model; live adds need a content model: ciubm)")
    parser.add_argument("--adds-per-s", type=float, default=0.0,
                        help="items posted per second during mimrec's at-rate phase (0: none)")
    parser.add_argument("--scale-items", type=int, default=0,
                        help="serve a copy of the run with this many synthetic items more in "
                        "its store (benchmarks/scale_bundle.py)")
    parser.add_argument("--scale-dir", type=Path, default=None,
                        help="where that copy lives (default: RUN/.bench_serve/scale-N)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.run / "ctr" / "manifest.json").is_file():
        raise SystemExit(f"{args.run} is not a finished run: run `make demo` first")
    served = args.run
    if args.scale_items:
        from scale_bundle import build  # benchmarks/ is this script's folder

        served = build(args.run, args.scale_items,
                       args.scale_dir or args.run / ".bench_serve" / f"scale-{args.scale_items}")
    body = request_body(served, args.candidates, args.history, spread=args.scale_items > 0)
    results = {}
    workdir = args.run / ".bench_serve"
    workdir.mkdir(exist_ok=True)
    for name in ("trivial", "mimrec"):
        port = free_port()
        proc = (start_trivial(port, workdir) if name == "trivial"
                else start_mimrec(served, port, args.workers, args.model))
        try:
            started = time.perf_counter()
            wait_healthy(port, proc, timeout=900)
            up_s = time.perf_counter() - started
            load(port, body, args.clients, args.warmup)
            live = name == "mimrec" and args.adds_per_s > 0
            results[name] = {
                "capacity": load(port, body, args.clients, args.seconds) | _loadavg(),
                "at_rate": (at_rate_with_adds(port, body, args) if live
                            else load(port, body, args.clients, args.seconds, args.rate))
                | _loadavg(),
            }
            results[name]["start_s"] = up_s
            if name == "mimrec":
                results[name]["memory"] = service_memory(proc.pid, args.workers)
        finally:
            stop(proc)
        for phase, r in results[name].items():
            if phase in ("start_s", "memory"):
                continue
            print(f"{name:8s} {phase:8s} {r['requests']:7d} requests  {r['errors']} errors  "
                  f"{r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                  f"(load average {r['loadavg_1m']:.1f})", flush=True)
            if "live_adds" in r:
                _print_adds(r["live_adds"])
        if "memory" in results[name]:
            _print_memory(results[name]["memory"], args.workers)
    m, t = results["mimrec"], results["trivial"]
    ratios = {"capacity_ratio": m["capacity"]["rps"] / t["capacity"]["rps"],
              "p99_at_rate_ratio": m["at_rate"]["p99_ms"] / t["at_rate"]["p99_ms"]}
    errors = (m["capacity"]["errors"] + m["at_rate"]["errors"]
              + m["at_rate"].get("live_adds", {}).get("write_errors", 0))
    targets = {"capacity>=200/s": m["capacity"]["rps"] >= 200,
               f"p99<=20ms@{args.rate:.0f}/s": m["at_rate"]["p99_ms"] <= 20,
               "zero_errors": errors == 0}
    if "live_adds" in m["at_rate"]:
        adds = m["at_rate"]["live_adds"]
        targets["no_stale_reads"] = (adds["stale_reads"] == 0 and adds["stale_scores"] == 0
                                     and adds["unchecked_items"] == 0)
        # every worker, asked directly, had every item within 1 s, and none scored an older
        # version after the acknowledgement (visible_ms also counts time without traffic)
        targets["visible<=1s"] = adds["checked_max_ms"] <= 1000 and adds["stale_scores"] == 0
        # every process of the service (supervisor, workers, the writer they share) per worker
        targets["rss<=2GiB/worker"] = m["memory"]["per_worker_mib"] <= 2048
    print(f"mimrec / trivial: capacity x{ratios['capacity_ratio']:.2f}, "
          f"p99 at {args.rate:.0f}/s x{ratios['p99_at_rate_ratio']:.2f}")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    out = {"setup": {"clients": args.clients, "candidates": args.candidates,
                     "history": args.history, "seconds": args.seconds, "rate": args.rate,
                     "workers": args.workers, "model": args.model,
                     "adds_per_s": args.adds_per_s, "scale_items": args.scale_items,
                     "catalogue": (f"the run's items + {args.scale_items:,} synthetic items "
                                   "(random vectors)" if args.scale_items else "the run's items"),
                     "cpus": os.cpu_count()},
           "results": results, "ratios": ratios, "targets": targets}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _loadavg() -> dict:
    return {"loadavg_1m": os.getloadavg()[0]}


def _print_adds(adds: dict) -> None:
    print(f"  live adds at {adds['rate']:.0f}/s: {adds['acknowledged']} acknowledged, "
          f"{adds['write_errors']} errors, write p50 {adds['write_p50_ms']:.1f} ms p99 "
          f"{adds['write_p99_ms']:.1f} ms; stale reads {adds['stale_reads']}, stale scores "
          f"{adds['stale_scores']}, unchecked {adds['unchecked_items']}; scored from by every "
          f"worker: p99 {adds['visible_p99_ms']:.1f} ms, max {adds['visible_max_ms']:.1f} ms "
          f"({adds['scoring_workers']} workers; a worker went up to "
          f"{adds['traffic_gap_max_ms']:.0f} ms without score traffic); read back by the "
          f"checker (each worker asked directly): p99 "
          f"{adds['checked_p99_ms']:.1f} ms, max {adds['checked_max_ms']:.1f} ms", flush=True)


def _print_memory(memory: dict, workers: int) -> None:
    parts = ", ".join(f"{m['role']} {m['rss_mib']:.0f} MiB (peak {m['peak_rss_mib']:.0f})"
                      for m in memory["processes"] if m["rss_mib"] is not None)
    print(f"  service RSS at the end: {parts}; total {memory['total_rss_mib']:.0f} MiB = "
          f"{memory['per_worker_mib']:.0f} MiB per worker ({workers})", flush=True)


if __name__ == "__main__":
    main()
