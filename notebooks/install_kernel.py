"""Installs the Rust Jupyter kernel (evcxr) for this course, set up to be quick:

1. builds `evcxr_jupyter` 0.22.0 with cargo, if it is not on PATH yet, with the settings
   measured fastest here (notebooks/README.md): the kernel spends most of a notebook's
   time analysing code with rust-analyzer, which it carries inside, so that part is
   optimised, and the rest is not;
2. registers it with Jupyter as the kernel `rust` (`evcxr_jupyter --install`);
3. points the kernel at one build folder for every notebook, `notebooks/.build`, with
   its settings in `notebooks/evcxr/init.evcxr` and `notebooks/.cargo/config.toml`, so
   that the course's dependencies are compiled once, not once per notebook, with the
   versions of the repository's Cargo.lock;
4. compiles the library and its dependencies there once, by running the notebooks'
   `:dep` cell in a kernel (needs jupyter_client, which jupyterlab and nbclient bring),
   so that the first notebook a learner opens starts as quickly as the others.

    python3 notebooks/install_kernel.py            # then: jupyter lab notebooks/

Run it again after moving the repository. `--rebuild` builds evcxr_jupyter even when one
is on PATH; `--no-warm` skips step 4 (the first notebook then compiles the library);
`--print-build-command` shows the cargo command and exits.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VERSION = "0.22.0"

# rust-analyzer's crates that parse, infer types and resolve names, which the kernel runs
# for every cell, optimised (opt-level 2), with the allocator and hash tables they spend
# their time in; everything else in the kernel stays unoptimised. Measured
# (notebooks/README.md): a notebook runs 5 times faster than on an unoptimised kernel,
# twice as fast as with these crates at opt-level 1, and the kernel builds in 9 minutes
# on 2 cores against 11 for a kernel optimised throughout. The lexer, the token-tree
# bridge and mimalloc (whose C code follows the opt-level) were added after a profile
# (notebooks/probe_kernel.py --perf) found them hot.
OPTIMISED = [
    "ra_ap_hir_ty",
    "ra_ap_hir_def",
    "ra_ap_hir_expand",
    "ra_ap_hir",
    "ra_ap_base_db",
    "ra_ap_intern",
    "ra_ap_syntax",
    "ra_ap_parser",
    "ra_ap_span",
    "ra_ap_tt",
    "ra_ap_mbe",
    "ra_ap_cfg",
    "ra-ap-rustc_type_ir",
    "ra-ap-rustc_next_trait_solver",
    "ra-ap-rustc_index",
    "salsa",
    "rowan",
    "ra-ap-rustc_lexer",
    "ra_ap_syntax-bridge",
    "libmimalloc-sys",
    "mimalloc",
    "hashbrown",
]

# Debug assertions and overflow checks off in the whole kernel: with them on, the
# standard library's precondition checks ran inside every parser loop. Together with the
# crates above, the kernel's fixed cost per notebook halved (notebooks/README.md).
BUILD_ENV = {
    "CARGO_PROFILE_DEV_DEBUG": "0",
    "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false",
    "CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false",
}


def build_command(root):
    command = ["cargo", "install", "--locked", "--debug", "evcxr_jupyter", "--version", VERSION]
    if root:
        command += ["--root", str(root)]
    for crate in OPTIMISED:
        command += ["--config", f"profile.dev.package.{crate}.opt-level=2"]
    return command


def kernel_dir():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "--data-dir"], capture_output=True, text=True
    )
    if out.returncode == 0 and out.stdout.strip():
        return Path(out.stdout.strip()) / "kernels" / "rust"
    return Path.home() / ".local" / "share" / "jupyter" / "kernels" / "rust"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="build evcxr_jupyter again")
    parser.add_argument("--root", type=Path, help="cargo install --root (default: ~/.cargo)")
    parser.add_argument("--print-build-command", action="store_true")
    parser.add_argument("--no-warm", action="store_true", help="leave the library's build to the first notebook")
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=HERE / ".build",
        help="the kernel's build folder (default notebooks/.build)",
    )
    args = parser.parse_args()
    command = build_command(args.root)
    settings = " ".join([*(f"{k}={v}" for k, v in BUILD_ENV.items()), *command])
    if args.print_build_command:
        print(settings)
        return
    binary = shutil.which("evcxr_jupyter")
    if args.root:
        candidate = args.root / "bin" / "evcxr_jupyter"
        binary = str(candidate) if candidate.exists() else None
    # A kernel this script built records how; one built with older settings is rebuilt.
    # An evcxr_jupyter installed some other way is used as it is.
    recorded = previous_build(kernel_dir() / "kernel.json")
    if binary and recorded and recorded != settings and not args.rebuild:
        print("the kernel was built with older settings: building it again", flush=True)
        args.rebuild = True
    binary_built_here = binary is None or args.rebuild
    if binary_built_here:
        print("building evcxr_jupyter:", " ".join(command), flush=True)
        env = dict(os.environ, **BUILD_ENV)
        subprocess.run(command, check=True, env=env)
        binary = shutil.which("evcxr_jupyter") if not args.root else str(args.root / "bin" / "evcxr_jupyter")
    if binary is None:
        sys.exit("evcxr_jupyter was built but is not on PATH; add ~/.cargo/bin to PATH and run this again")
    subprocess.run([binary, "--install"], check=True, stdout=subprocess.DEVNULL)

    build = args.build_dir.resolve()
    build.mkdir(parents=True, exist_ok=True)
    # The kernel writes its own Cargo.toml there; a Cargo.lock beside it fixes the
    # dependencies' versions to the repository's.
    if not (build / "Cargo.lock").exists():
        shutil.copy(ROOT / "Cargo.lock", build / "Cargo.lock")
    spec_path = kernel_dir() / "kernel.json"
    spec = json.loads(spec_path.read_text())
    spec["argv"][0] = str(Path(binary).resolve())
    spec["env"] = {
        "EVCXR_TMPDIR": str(build),
        "EVCXR_CONFIG_DIR": str(HERE / "evcxr"),
    }
    if binary_built_here or recorded:
        spec.setdefault("metadata", {})["cxr_build"] = settings if binary_built_here else recorded
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"kernel `rust` installed ({spec_path}); it builds in {build}")
    if not args.no_warm:
        warm()


def previous_build(spec_path):
    """The build settings the installed kernel's spec records, if this script built it."""
    try:
        return json.loads(spec_path.read_text()).get("metadata", {}).get("cxr_build")
    except (OSError, ValueError):
        return None


def dep_cell():
    """The `:dep` cell every notebook starts with (cargo xtask notebooks writes it)."""
    notebook = json.loads((HERE / "01-loading.ipynb").read_text())
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith(":dep "):
            return source
    sys.exit("notebooks/01-loading.ipynb has no `:dep` cell; run `cargo xtask notebooks`")


def warm():
    """Runs the notebooks' `:dep` cell in a new kernel started where Jupyter starts the
    notebooks' kernels (this folder), so that the build is the one they reuse."""
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        print("jupyter_client is not installed: the first notebook will compile the library "
              "(pip install jupyterlab, then run this again to do it now)")
        return
    cell = dep_cell()
    print(f"compiling the library for the kernel, once ({cell}); about 9 minutes on 2 cores", flush=True)
    started = time.perf_counter()
    manager, client = start_new_kernel(kernel_name="rust", cwd=str(HERE), startup_timeout=600)
    try:
        reply = client.execute_interactive(cell, timeout=3600, output_hook=report)
    finally:
        manager.shutdown_kernel()
    if reply["content"]["status"] != "ok":
        sys.exit(f"the `:dep` cell failed in the kernel: {reply['content'].get('evalue', '')}")
    print(f"library compiled for the kernel in {time.perf_counter() - started:.0f} s")


def report(msg):
    """Shows cargo's lines and errors while the kernel compiles."""
    if msg["msg_type"] == "stream":
        print(msg["content"]["text"], end="", flush=True)
    elif msg["msg_type"] == "error":
        print(f"{msg['content']['ename']}: {msg['content']['evalue']}", flush=True)


if __name__ == "__main__":
    main()
