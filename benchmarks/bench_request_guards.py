"""What the service's request guards cost: a score-sized request through the trusted-host and
token check (AccessGuard) and the size / time limits (RequestLimits) in process, against the same
request to a bare ASGI app. Prints microseconds a request and the added share of a ~3 ms forward
pass; asserts nothing.

    .venv/bin/python benchmarks/bench_request_guards.py --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from mimrec.serve.access import LOOPBACK_HOSTS, AccessGuard, Tokens
from mimrec.serve.limits import RequestLimits

FORWARD_MS = 3.0  # a /v1/score forward pass (README, Serving)


async def bare(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def score_request() -> tuple[dict, bytes]:
    ids = ",".join(str(i) for i in range(150)).encode()
    body = b'{"history": [' + ids[:200] + b'], "candidates": [' + ids + b"]}"
    scope = {"type": "http", "method": "POST", "path": "/v1/score",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"user-agent", b"bench"), (b"accept", b"*/*")]}
    return scope, body


async def per_request_us(app, n: int) -> float:
    scope, body = score_request()

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_message: dict) -> None:
        return None

    start = time.perf_counter()
    for _ in range(n):
        await app(scope, receive, send)
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    guarded = AccessGuard(RequestLimits(bare, 8 << 20, 16 * 1024, 30.0), Tokens("w", "r"),
                          LOOPBACK_HOSTS)
    for _ in range(args.repeats):
        base = asyncio.run(per_request_us(bare, args.requests))
        full = asyncio.run(per_request_us(guarded, args.requests))
        added = full - base
        print(f"bare {base:6.2f} us/request  guarded {full:6.2f} us/request  added "
              f"{added:6.2f} us = {added / (FORWARD_MS * 1000):.1%} of a {FORWARD_MS:g} ms "
              "forward pass", flush=True)


if __name__ == "__main__":
    main()
