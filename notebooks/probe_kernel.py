"""Times cells one by one in a new kernel, to find where a notebook's fixed cost goes.

    python3 notebooks/probe_kernel.py                 # the cells below, in the kernel `rust`
    python3 notebooks/probe_kernel.py --perf 2,3      # and a `perf record` of cells 2 and 3
    python3 notebooks/probe_kernel.py --cell ':dep polars = "0.55"' --cell 'let x = 1;'

The default cells separate the kernel's own costs: a cell before any dependency (the
standard library's analysis), the `:dep` cell (cargo, then rust-analyzer loading the
crate graph `cargo metadata` describes), the first cell that names the library (name
resolution of the library and of every crate it imports from) and a later cell.
`--perf` writes `target/probe-cellN.data` for `perf report -i ... --sort sym`. Needs
jupyter_client (nbclient brings it) and the kernel installed by install_kernel.py.
"""

import argparse
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELLS = [
    ":opt 0",
    "let a = 1;",
    f':dep cxr = {{ path = {json.dumps(str(ROOT))}, default-features = false }}',
    "let b = cxr::ROOT;",
    f"let t = cxr::prelude::read_csv({json.dumps(str(ROOT / 'data/chest_xray/val.csv'))}).unwrap();",
    "let h = t.height();",
]


def run_cell(client, code):
    """Runs `code`, waits until the kernel is idle again; returns seconds and output."""
    start = time.perf_counter()
    msg_id = client.execute(code)
    out = []
    while True:
        msg = client.get_iopub_msg(timeout=3600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            out.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return time.perf_counter() - start, "".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="rust")
    parser.add_argument("--cell", action="append", help="a cell to run (repeat; default: the cells above)")
    parser.add_argument("--perf", default="", help="cell numbers to record with perf, e.g. 2,3")
    args = parser.parse_args()
    from jupyter_client.manager import start_new_kernel

    cells = args.cell or CELLS
    recorded = {int(n) for n in args.perf.split(",") if n}
    if recorded and not shutil.which("perf"):
        parser.error("--perf needs `perf` on PATH")
    start = time.perf_counter()
    manager, client = start_new_kernel(kernel_name=args.kernel, startup_timeout=600)
    pid = manager.provisioner.process.pid
    print(f"{time.perf_counter() - start:7.1f} s  kernel start", flush=True)
    try:
        for number, code in enumerate(cells):
            perf = None
            if number in recorded:
                data = ROOT / "target" / f"probe-cell{number}.data"
                data.parent.mkdir(exist_ok=True)
                perf = subprocess.Popen(
                    ["perf", "record", "-F", "199", "-o", str(data), "-p", str(pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
            seconds, out = run_cell(client, code)
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait()
            shown = " ".join(out.split())[:100]
            print(f"{seconds:7.1f} s  cell {number}: {code[:60]}{'  -> ' + shown if shown else ''}", flush=True)
    finally:
        manager.shutdown_kernel()


if __name__ == "__main__":
    main()
