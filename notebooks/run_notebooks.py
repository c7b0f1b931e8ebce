"""Runs notebooks on the Rust kernel (evcxr) the way Jupyter runs them, cell by cell, and
times each part: the kernel's start, the `:dep` cell, the first code cell, the later
cells. Writes each executed notebook beside the original (`NN-name.executed.ipynb`) for
`cargo xtask check-executed`, and a Markdown table of the times.

    python3 notebooks/run_notebooks.py notebooks/0*.ipynb --table target/notebook-times.md

Needs nbclient (`pip install nbclient`) and the `rust` kernel (notebooks/README.md).
The kernel's settings come from the environment it inherits (EVCXR_TMPDIR,
EVCXR_CONFIG_DIR); `--build-dir` sets both for you.
"""

import argparse
import os
import statistics
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


def row(t):
    cells = [s for _, s in t["cells"]]
    dep, first, later = cells[0], cells[1] if len(cells) > 1 else 0.0, cells[2:]
    slowest = max(t["cells"][2:], key=lambda c: c[1], default=(0, 0.0))
    return (
        f"| {t['notebook']} | {t['kernel_start']:.1f} | {dep:.1f} | {first:.1f} | "
        f"{statistics.median(later) if later else 0.0:.1f} | "
        f"{slowest[1]:.1f} (cell {slowest[0]}) | {len(cells)} | {t['total']:.0f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--kernel", default="rust")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--table", type=Path, help="also write the table here")
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
    for path in notebooks:
        times, out = run(path, args.kernel, args.timeout)
        lines.append(row(times))
        print(lines[-1], flush=True)
        print(f"  wrote {out}", file=sys.stderr, flush=True)
    table = "\n".join(header + lines) + "\n"
    print(table)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table)


if __name__ == "__main__":
    main()
