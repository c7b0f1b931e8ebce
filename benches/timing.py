"""The timing rule the peers' per-layer scripts share with cxr's benches: the fastest of
`repeats` runs after `warmups` untimed ones (on a shared machine other work slows some
runs; the fastest is the one least disturbed)."""
import time


def fastest(f, repeats, warmups=1):
    for _ in range(warmups):
        f()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best
