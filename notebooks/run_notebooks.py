"""Runs notebooks on the Rust kernel (evcxr) the way Jupyter runs them, cell by cell, and
times each part: the kernel's start, the `:dep` cell, the first code cell, the later
cells. Writes each executed notebook beside the original (`NN-name.executed.ipynb`) for
`cargo xtask check-executed`, and a Markdown table of the times.

    python3 notebooks/run_notebooks.py notebooks/0*.ipynb --table target/notebook-times.md

Needs nbclient (`pip install nbclient`) and the `rust` kernel (notebooks/README.md).
The kernel's settings come from the environment it inherits (EVCXR_TMPDIR,
EVCXR_CONFIG_DIR) or from the kernel's spec, which install_kernel.py writes.

`--jobs 2` runs two kernels at a time once the first notebook has built the library: a
kernel spends most of a cell analysing it on one thread, so two use two cores. Each
kernel needs a build folder of its own (evcxr writes its crate there); the second starts
as a copy of the first, compiled dependencies included, in `BUILD/jobs/job1`.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def run(path, kernel, timeout):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=timeout,
        allow_errors=True,
        startup_timeout=600,
        resources={"metadata": {"path": str(path.parent)}},
    )
    times = {"notebook": path.name, "cells": []}
    started = time.monotonic()
    with client.setup_kernel():
        times["kernel_start"] = time.monotonic() - started
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t0 = time.monotonic()
            client.execute_cell(cell, index)
            times["cells"].append((index, time.monotonic() - t0))
    times["total"] = time.monotonic() - started
    out = path.with_name(path.stem + ".executed.ipynb")
    nbformat.write(nb, out)
    return times, out


def failed_cells(nb):
    """Indices of the code cells that raised an error or wrote to stderr."""
    return [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and any(
            o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")
            for o in cell.get("outputs", [])
        )
    ]


def run_retrying(path, kernel, timeout, retries):
    """`run`, again in a new kernel when a cell failed, at most `retries` times. evcxr
    sometimes loses the types of earlier cells' variables (seen once in about ten
    runs of notebook 1: "cannot find value `xray`", "the `!` type is experimental");
    a notebook that fails twice fails for real, and check-executed reports it."""
    for attempt in range(retries + 1):
        times, out = run(path, kernel, timeout)
        failed = failed_cells(nbformat.read(out, as_version=4))
        if not failed or attempt == retries:
            return times, out
        print(
            f"{path.name}: cells {failed} failed; running it again in a new kernel",
            file=sys.stderr,
            flush=True,
        )


def row(t):
    cells = [s for _, s in t["cells"]]
    dep, first, later = cells[0], cells[1] if len(cells) > 1 else 0.0, cells[2:]
    slowest = max(t["cells"][2:], key=lambda c: c[1], default=(0, 0.0))
    return (
        f"| {t['notebook']} | {t['kernel_start']:.1f} | {dep:.1f} | {first:.1f} | "
        f"{statistics.median(later) if later else 0.0:.1f} | "
        f"{slowest[1]:.1f} (cell {slowest[0]}) | {len(cells)} | {t['total']:.0f} |"
    )


def kernel_spec(kernel):
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().get_kernel_spec(kernel)


def worker(paths, kernel, timeout, retries, build, queue):
    """Runs `paths` one after another on a copy of `kernel` that builds in `build`."""
    if build is not None:
        spec = kernel_spec(kernel)
        home = Path(tempfile.mkdtemp(prefix="cxr-kernels-"))
        kernel_dir = home / "kernels" / kernel
        # The whole folder, version.txt included: evcxr rewrites a kernel folder whose
        # version it does not recognise, and with it the environment set here.
        shutil.copytree(spec.resource_dir, kernel_dir)
        body = json.loads((kernel_dir / "kernel.json").read_text())
        body["env"] = dict(spec.env or {}, EVCXR_TMPDIR=str(build))
        (kernel_dir / "kernel.json").write_text(json.dumps(body))
        # Jupyter looks in JUPYTER_PATH first, so `kernel` names this copy here.
        os.environ["JUPYTER_PATH"] = str(home)
    for path in paths:
        times, out = run_retrying(path, kernel, timeout, retries)
        queue.put((str(path), times, str(out)))


def run_all(notebooks, kernel, timeout, jobs, retries):
    """Yields (path, times, executed copy) as notebooks finish."""
    if jobs <= 1 or len(notebooks) <= 1:
        for path in notebooks:
            times, out = run_retrying(path, kernel, timeout, retries)
            yield str(path), times, str(out)
        return
    # The first notebook alone: it compiles the library and its dependencies once.
    first, rest = notebooks[0], notebooks[1:]
    times, out = run_retrying(first, kernel, timeout, retries)
    yield str(first), times, str(out)
    build = Path(
        os.environ.get("EVCXR_TMPDIR") or (kernel_spec(kernel).env or {}).get("EVCXR_TMPDIR", "")
    )
    if not build.is_dir():
        sys.exit("--jobs needs the kernel's build folder (EVCXR_TMPDIR): run install_kernel.py")
    # The copies live inside the build folder, which the workspace excludes (a crate
    # elsewhere in the repository would be taken for a member of it), and under
    # notebooks/, whose .cargo/config.toml sets how the dependencies are compiled.
    builds = [None]
    for job in range(1, jobs):
        copy = build / "jobs" / f"job{job}"
        if not copy.exists():
            shutil.copytree(
                build,
                copy,
                symlinks=True,
                ignore=lambda folder, names: ["jobs"] if Path(folder) == build else [],
            )
        builds.append(copy)
    # New processes, not forks of this one, which has run an event loop already.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    shares = [rest[job::jobs] for job in range(jobs)]
    procs = [
        context.Process(target=worker, args=(share, kernel, timeout, retries, b, queue))
        for share, b in zip(shares, builds)
        if share
    ]
    for proc in procs:
        proc.start()
    for _ in rest:
        yield queue.get()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            sys.exit(f"a notebook runner failed (exit {proc.exitcode})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--kernel", default="rust")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--table", type=Path, help="also write the table here")
    parser.add_argument("--jobs", type=int, default=1, help="kernels at a time")
    parser.add_argument(
        "--retries", type=int, default=0, help="run a notebook whose cells failed again"
    )
    parser.add_argument(
        "--build-dir",
        type=Path,
        help="the kernel's build folder (EVCXR_TMPDIR); its settings from notebooks/evcxr/",
    )
    args = parser.parse_args()
    if args.build_dir:
        args.build_dir.mkdir(parents=True, exist_ok=True)
        os.environ["EVCXR_TMPDIR"] = str(args.build_dir.resolve())
        os.environ["EVCXR_CONFIG_DIR"] = str(HERE / "evcxr")
    header = [
        "| notebook | kernel start (s) | `:dep` cell (s) | first code cell (s) | "
        "later cells, median (s) | slowest later cell (s) | code cells | total (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines = []
    notebooks = [p for p in args.notebooks if not p.name.endswith(".executed.ipynb")]
    started = time.monotonic()
    for _, times, out in run_all(notebooks, args.kernel, args.timeout, args.jobs, args.retries):
        lines.append(row(times))
        print(lines[-1], flush=True)
        print(f"  wrote {out}", file=sys.stderr, flush=True)
    lines.sort()
    table = "\n".join(header + lines) + "\n"
    table += f"\n{len(notebooks)} notebooks, {args.jobs} at a time: {time.monotonic() - started:.0f} s\n"
    print(table)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table)


if __name__ == "__main__":
    main()
