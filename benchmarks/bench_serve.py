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
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
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


def start_mimrec(run: Path, port: int, workers: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mimrec", "serve", str(run), "--port", str(port),
           "--workers", str(workers)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_trivial(port: int, folder: Path) -> subprocess.Popen:
    (folder / "trivial_app.py").write_text(TRIVIAL_APP)
    cmd = [sys.executable, "-m", "uvicorn", "trivial_app:app", "--port", str(port),
           "--log-level", "warning", "--no-access-log", "--app-dir", str(folder)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(port: int, body: bytes, clients: int, seconds: float, rate: float = 0.0) -> dict:
    """``clients`` threads post ``body`` for ``seconds``: back to back (``rate`` 0), or each on a
    fixed schedule so that together they offer ``rate`` requests/s. Latencies in ms, from the
    scheduled send time when paced."""
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
            try:
                conn.request("POST", "/v1/score", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[k].append((time.perf_counter() - start) * 1000)
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


def request_body(run: Path, candidates: int, history: int) -> bytes:
    items = pd.read_parquet(run / "data" / "items.parquet")["item_id"].astype(str).tolist()
    if len(items) < candidates + history:
        raise SystemExit(f"{run}: catalogue has {len(items)} items, need {candidates + history}")
    return json.dumps({"history": items[:history],
                       "candidates": items[history:history + candidates]}).encode()


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
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.run / "ctr" / "manifest.json").is_file():
        raise SystemExit(f"{args.run} is not a finished run: run `make demo` first")
    body = request_body(args.run, args.candidates, args.history)
    results = {}
    workdir = args.run / ".bench_serve"
    workdir.mkdir(exist_ok=True)
    for name in ("trivial", "mimrec"):
        port = free_port()
        proc = (start_trivial(port, workdir) if name == "trivial"
                else start_mimrec(args.run, port, args.workers))
        try:
            wait_healthy(port, proc)
            load(port, body, args.clients, args.warmup)
            results[name] = {
                "capacity": load(port, body, args.clients, args.seconds),
                "at_rate": load(port, body, args.clients, args.seconds, args.rate),
            }
        finally:
            stop(proc)
        for phase, r in results[name].items():
            print(f"{name:8s} {phase:8s} {r['requests']:7d} requests  {r['errors']} errors  "
                  f"{r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms",
                  flush=True)
    m, t = results["mimrec"], results["trivial"]
    ratios = {"capacity_ratio": m["capacity"]["rps"] / t["capacity"]["rps"],
              "p99_at_rate_ratio": m["at_rate"]["p99_ms"] / t["at_rate"]["p99_ms"]}
    errors = m["capacity"]["errors"] + m["at_rate"]["errors"]
    targets = {"capacity>=200/s": m["capacity"]["rps"] >= 200,
               f"p99<=20ms@{args.rate:.0f}/s": m["at_rate"]["p99_ms"] <= 20,
               "zero_errors": errors == 0}
    print(f"mimrec / trivial: capacity x{ratios['capacity_ratio']:.2f}, "
          f"p99 at {args.rate:.0f}/s x{ratios['p99_at_rate_ratio']:.2f}")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    out = {"setup": {"clients": args.clients, "candidates": args.candidates,
                     "history": args.history, "seconds": args.seconds, "rate": args.rate,
                     "workers": args.workers,
                     "cpus": os.cpu_count()},
           "results": results, "ratios": ratios, "targets": targets}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
