"""Installs the Rust Jupyter kernel (evcxr) for this course, set up to be quick:

1. builds `evcxr_jupyter` 0.22.0 with cargo, if it is not on PATH yet, with the settings
   measured fastest here (notebooks/README.md): the kernel spends most of a notebook's
   time analysing code with rust-analyzer, which it carries inside, so that part is
   optimised, and the rest is not;
2. registers it with Jupyter as the kernel `rust` (`evcxr_jupyter --install`);
3. points the kernel at one build folder for every notebook, `notebooks/.build`, with
   its settings in `notebooks/evcxr/init.evcxr` and `notebooks/.cargo/config.toml`, so
   that the course's dependencies are compiled once, not once per notebook, with the
   versions of the repository's Cargo.lock.

    python3 notebooks/install_kernel.py            # then: jupyter lab notebooks/

Run it again after moving the repository. `--rebuild` builds evcxr_jupyter even when one
is on PATH; `--print-build-command` shows the cargo command and exits.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VERSION = "0.22.0"

# rust-analyzer's crates that infer types and resolve names, which the kernel runs for
# every cell, optimised (opt-level 2); everything else in the kernel stays unoptimised.
# Measured (notebooks/README.md): a notebook runs 5 times faster than on an unoptimised
# kernel, twice as fast as with these crates at opt-level 1, and the kernel builds in
# 9 minutes on 2 cores against 11 for a kernel optimised throughout.
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
]


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
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=HERE / ".build",
        help="the kernel's build folder (default notebooks/.build)",
    )
    args = parser.parse_args()
    command = build_command(args.root)
    if args.print_build_command:
        print(" ".join(command))
        return
    binary = shutil.which("evcxr_jupyter")
    if args.root:
        candidate = args.root / "bin" / "evcxr_jupyter"
        binary = str(candidate) if candidate.exists() else None
    if binary is None or args.rebuild:
        print("building evcxr_jupyter:", " ".join(command), flush=True)
        env = dict(os.environ, CARGO_PROFILE_DEV_DEBUG="0")
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
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"kernel `rust` installed ({spec_path}); it builds in {build}")


if __name__ == "__main__":
    main()
