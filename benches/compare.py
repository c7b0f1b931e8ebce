"""Issue 9's targets from one command: cxr's benchmarks and its peers' (PyTorch, Keras
on TensorFlow, OpenCV, Pillow), run one after another on this machine, written out as
ratios with the peers' numbers beside them.

    python3 benches/compare.py                    # report in target/bench/report.md
    python3 benches/compare.py --python /path/to/venv/bin/python   # peers already installed

Without --python it makes a virtual environment in target/bench-venv and installs the
peers there (torch, torchvision, tensorflow-cpu, opencv-python-headless, pillow; a few
gigabytes, once). The tests never use it. Every program prints `RESULT <key> <images/s>`
lines, which this script collects.

What is compared (the same work on both sides, float32, all cores unless pinned):
- training step of the tutorial CNN, batch 25, 180 x 180 (forward, BCE, backward, Adam);
- inference of the tutorial CNN, batch 25; VGG16 forward at 224, batch 1 and 8;
- the input pipeline, TFRecord -> JPEG decode -> 180 x 180, one worker pinned to one
  core, and every core;
- the FP32 peak of the machine (benches/fp32_peak.rs), and the fraction of it that each
  model's FLOPs (convolutions and dense layers; a training step counted as three forward
  passes) reach.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ["torch", "torchvision", "tensorflow-cpu", "opencv-python-headless", "pillow", "numpy"]
RESULT = re.compile(r"^RESULT (\S+) ([0-9.]+)\s*$")


def peer_python(args):
    if args.python:
        return args.python
    venv = os.path.join(ROOT, "target", "bench-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"making {venv} and installing {' '.join(PEERS)} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PEERS], check=True)
    return python


def run(cmd, results, env=None, pin=False):
    """Runs `cmd` from the repository root, echoing its output and keeping its RESULTs."""
    if pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    print("$", " ".join(cmd), flush=True)
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        match = RESULT.match(line)
        if match:
            results[match.group(1)] = float(match.group(2))
        elif not line.startswith(("I0000", "W0000", "WARNING: All log")):
            print("  " + line.rstrip(), flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"{cmd} failed with exit code {proc.returncode}")


def conv_macs(size, c_in, c_out, k=3, groups=1):
    return size * size * c_out * (c_in // groups) * k * k


def tutorial_cnn_flops():
    """Multiply-adds x 2 of one forward pass at 180 x 180 (tests/fixtures/make_keras_models.py)."""
    macs = conv_macs(180, 3, 16) + conv_macs(180, 16, 16)
    size, c = 90, 16
    for f in [32, 64, 128, 256]:
        for c_in in [c, f]:
            macs += conv_macs(size, c_in, c_in, groups=c_in) + conv_macs(size, c_in, f, k=1)
        size, c = size // 2, f
    n = 256 * 5 * 5
    for units in [512, 128, 64, 1]:
        macs += n * units
        n = units
    return 2 * macs


def vgg16_flops():
    macs, c, size = 0, 3, 224
    for widths in [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]:
        for f in widths:
            macs += conv_macs(size, c, f)
            c = f
        size //= 2
    macs += 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    return 2 * macs


def peers(results, key, against=None):
    """The peers' images/s for `key` (all, or those named in `against`), by peer name."""
    found = {k.split(".", 1)[1]: v for k, v in results.items() if k.startswith(key + ".") and not k.endswith(".cxr")}
    return {k: v for k, v in found.items() if against is None or k in against}


def best(results, key, against=None):
    """The fastest peer for `key` and its images/s, or (None, None)."""
    found = peers(results, key, against)
    if not found:
        return None, None
    name = max(found, key=found.get)
    return name, found[name]


def report(results, machine):
    lines = [
        f"{datetime.date.today()}, {machine}; `python3 benches/compare.py`.",
        "",
        "| target | cxr (images/s) | peers (images/s) | ratio | target met |",
        "|---|---|---|---|---|",
    ]

    def row(name, key, goal, against=None):
        ours = results.get(f"{key}.cxr")
        peer, theirs = best(results, key, against)
        if ours is None or peer is None:
            lines.append(f"| {name} | {ours} | missing | | |")
            return
        ratio = ours / theirs
        shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(peers(results, key, against).items()))
        met = "yes" if ratio >= goal else "no"
        lines.append(f"| {name} | {ours:.1f} | {shown} | {ratio:.2f}x {peer} (goal {goal:g}x) | {met} |")

    row("training step, tutorial CNN, b25: vs PyTorch channels-last", "train", 1.0, ["pytorch-cl"])
    row("training step, tutorial CNN, b25: vs Keras on TensorFlow", "train", 1.0, ["keras-tensorflow"])
    row("inference, tutorial CNN, b25: vs the faster of TensorFlow and PyTorch", "infer", 1.0)
    row("VGG16 forward, 224, batch 1: vs PyTorch", "vgg16-b1", 1.0, ["pytorch-cf", "pytorch-cl"])
    row("VGG16 forward, 224, batch 8: vs PyTorch", "vgg16-b8", 1.0, ["pytorch-cf", "pytorch-cl"])
    row("input pipeline, one core: vs OpenCV", "pipeline-1", 1.5, ["opencv"])
    if "pipeline-1.cxr" in results and "pipeline-all.cxr" in results:
        cores = os.cpu_count() or 1
        scale = results["pipeline-all.cxr"] / results["pipeline-1.cxr"]
        lines.append(
            f"| input pipeline, {cores} cores vs one | {results['pipeline-all.cxr']:.1f} | "
            f"OpenCV pool {results.get('pipeline-all.opencv', float('nan')):.1f} | {scale:.2f}x on {cores} cores | |"
        )
    peak = results.get("peak.gflops")
    if peak:
        lines += [
            "",
            f"FP32 peak measured (the widest FMA vectors, every core; benches/fp32_peak.rs): {peak:.1f} GFLOP/s. Share of it reached "
            "(model FLOPs: convolutions and dense layers; a training step counted as three forward passes):",
            "",
            "| work | FLOPs per image | cxr | best peer |",
            "|---|---|---|---|",
        ]
        for name, key, flops in [
            ("training step, tutorial CNN", "train", 3 * tutorial_cnn_flops()),
            ("inference, tutorial CNN", "infer", tutorial_cnn_flops()),
            ("VGG16 forward, batch 1", "vgg16-b1", vgg16_flops()),
            ("VGG16 forward, batch 8", "vgg16-b8", vgg16_flops()),
        ]:
            ours = results.get(f"{key}.cxr")
            peer, theirs = best(results, key)
            if ours is None:
                continue
            share = ours * flops / 1e9 / peak
            peer_share = f"{theirs * flops / 1e9 / peak:.1%} ({peer})" if theirs else ""
            lines.append(f"| {name} | {flops / 1e9:.2f} G | {share:.1%} | {peer_share} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="a Python with the peers installed (default: make target/bench-venv)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "report.md"))
    args = parser.parse_args()
    python = peer_python(args)
    results = {}
    run(["cargo", "build", "--release", "--benches", "--bin", "cxr"], results)
    run(["cargo", "bench", "--bench", "fp32_peak"], results)
    run(["cargo", "bench", "--bench", "train_step"], results)
    run([python, "benches/pytorch_train_step.py"], results, env={"PYTHONPATH": os.path.join(ROOT, "benches")})
    run([python, "benches/keras_train_step.py"], results)
    run(["cargo", "bench", "--bench", "models"], results)
    run([python, "benches/pytorch_models.py"], results)
    run([python, "benches/keras_models.py"], results)
    with tempfile.TemporaryDirectory() as records:
        run(["cargo", "run", "--release", "--quiet", "--", "tfrecord", "write", "data/chest_xray/val", records], results)
        run(["cargo", "bench", "--bench", "pipeline"], results, env={"WORKERS": "1"}, pin=True)
        run([python, "benches/pipeline_python.py", records], results, env={"WORKERS": "1"}, pin=True)
        cores = str(os.cpu_count() or 1)
        run(["cargo", "bench", "--bench", "pipeline"], results, env={"WORKERS": cores})
        run([python, "benches/pipeline_python.py", records], results, env={"WORKERS": cores})
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = report(results, f"{cpu}, {os.cpu_count()} cores")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print()
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
