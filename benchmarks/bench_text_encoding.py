"""Text-tower throughput against sentence-transformers: same model, same texts, same threads.

Encodes every MovieLens-100K item text ("Title. Year. Genres") with mimrec's text tower and with
``sentence_transformers.SentenceTransformer`` on the same all-MiniLM-L6-v2 folder, alternating the
two (so background load hits both alike), keeps each one's best run, checks that both produce the
same vectors, and prints items/s and the ratio (ours / theirs; >= 1.0 means we are not slower).
Prints, never asserts: timings are for reading.

Usage: python benchmarks/bench_text_encoding.py [--smoke] [--threads N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mimrec.data.movielens import load_movielens
from mimrec.encoders.text import default_text_model, item_texts, load_text_tower


def best_rate(
    encode: Callable[[], torch.Tensor], n: int, repeats: int
) -> tuple[float, torch.Tensor]:
    """Best items/s over ``repeats`` runs, and the last output."""
    best, out = 0.0, None
    for _ in range(repeats):
        started = time.perf_counter()
        out = encode()
        best = max(best, n / (time.perf_counter() - started))
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="64 texts, one run each")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=64, help="mimrec's batch size")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers'")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    texts = item_texts(load_movielens().items, ("title", "year", "genres"))
    repeats = 1 if args.smoke else args.repeats
    texts = texts[:64] if args.smoke else texts
    ours = load_text_tower("", max_length=256).eval()  # ST's max_seq_length for this model
    theirs = SentenceTransformer(str(default_text_model()), device="cpu")
    ours.encode(texts[:8]), theirs.encode(texts[:8])  # warm-up

    def run_ours() -> torch.Tensor:
        return ours.encode(texts, args.batch_size)

    def run_theirs() -> torch.Tensor:
        return theirs.encode(texts, batch_size=args.st_batch_size, convert_to_tensor=True)

    rate_ours, rate_theirs, a, b = 0.0, 0.0, None, None
    for _ in range(repeats):  # alternate so that background load hits both
        r, a = best_rate(run_ours, len(texts), 1)
        rate_ours = max(rate_ours, r)
        r, b = best_rate(run_theirs, len(texts), 1)
        rate_theirs = max(rate_theirs, r)
    cos = F.cosine_similarity(a, b.float(), dim=-1).min().item()
    print(f"texts: {len(texts)}  threads: {args.threads}  min cosine ours vs theirs: {cos:.6f}")
    print(f"mimrec text tower     : {rate_ours:8.1f} items/s (batch {args.batch_size})")
    print(f"sentence-transformers : {rate_theirs:8.1f} items/s (batch {args.st_batch_size})")
    print(f"ratio ours/theirs     : {rate_ours / rate_theirs:.2f}  (target >= 1.0)")


if __name__ == "__main__":
    main()
