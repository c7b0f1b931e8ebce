"""Issue 9's targets from one command: cxr's benchmarks and its peers' (PyTorch, Keras
on TensorFlow, OpenCV, Pillow), run one after another on this machine, written out as
ratios with the peers' numbers beside them.

    python3 benches/compare.py                    # report in target/bench/report.md
    python3 benches/compare.py --rounds 5         # more rounds (default 3)
    python3 benches/compare.py --python /path/to/venv/bin/python   # peers already installed

Without --python it makes a virtual environment in target/bench-venv and installs the
peers there (torch, torchvision, tensorflow-cpu, opencv-python-headless, pillow,
safetensors; a few gigabytes, once), and checks that everything the peers' scripts
import is there. The tests never use it. Every program prints `RESULT <key> <images/s>`
lines, which this script collects.

Each comparison runs in rounds, cxr and its peers one after the other in every round
(cxr first in odd rounds, last in even ones), so that a machine that slows down or
speeds up during the run weighs on both sides alike. The report gives each side's median
and its range over the rounds, the ratio of the medians and the range of the ratios of
the single rounds, and the instruction set the machine has (AVX-512, AVX2). With an
NVIDIA GPU (`nvidia-smi -L` lists one) it adds the training step on the GPU, batch 25
and 100, against PyTorch on the same GPU (cxr built with `--features cuda`).

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
PEERS = ["torch", "torchvision", "tensorflow-cpu", "opencv-python-headless", "pillow", "numpy", "safetensors"]
# What the peers' scripts import (keras_*.py import tests/fixtures/make_keras_models.py).
IMPORTS = "import torch, torchvision, tensorflow, keras, cv2, PIL, numpy, safetensors"
RESULT = re.compile(r"^RESULT (\S+) ([0-9.]+)\s*$")


def peer_python(args):
    if args.python:
        return args.python
    venv = os.path.join(ROOT, "target", "bench-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"making {venv} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if subprocess.run([python, "-c", IMPORTS], capture_output=True).returncode != 0:
        print(f"installing {' '.join(PEERS)} into {venv}", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PEERS], check=True)
        subprocess.run([python, "-c", IMPORTS], check=True)
    return python


def instruction_set():
    """The widest vector instructions this CPU has, as the peers' kernels pick them."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags and "fma" in flags:
        return "AVX2"
    return platform.machine()


def has_nvidia_gpu():
    if not shutil.which("nvidia-smi"):
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listed.returncode == 0 and "GPU" in listed.stdout


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
            results.setdefault(match.group(1), []).append(float(match.group(2)))
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


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def shown(values):
    """A median with the range of the rounds: `33.9 (33.1-34.6)`."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def medians(results):
    return {k: median(v) for k, v in results.items()}


def peers(results, key, against=None):
    """The peers' median images/s for `key` (all, or those named in `against`), by peer name."""
    found = {
        k[len(key) + 1:]: median(v)
        for k, v in results.items()
        if k.startswith(key + ".") and not k.endswith(".cxr")
    }
    return {k: v for k, v in found.items() if against is None or k in against}


def best(results, key, against=None):
    """The fastest peer for `key` and its images/s, or (None, None)."""
    found = peers(results, key, against)
    if not found:
        return None, None
    name = max(found, key=found.get)
    return name, found[name]


def report(results, machine, rounds):
    lines = [
        f"{datetime.date.today()}, {machine}; `python3 benches/compare.py --rounds {rounds}`.",
        "Medians of the rounds with their range in brackets; the ratio of the medians, and in",
        "brackets the range of the ratios of single rounds (cxr and its peer in the same round).",
        "",
        "| target | cxr (images/s) | peers (images/s) | ratio | target met |",
        "|---|---|---|---|---|",
    ]

    def row(name, key, goal, against=None):
        ours = results.get(f"{key}.cxr")
        peer, theirs = best(results, key, against)
        listed = ", ".join(
            f"{k} {shown(results[f'{key}.{k}'])}" for k in sorted(peers(results, key, against))
        )
        if ours is None or peer is None:
            lines.append(f"| {name} | {shown(ours) if ours else 'missing'} | {listed or 'missing'} | | |")
            return
        ratio = median(ours) / theirs
        per_round = [a / b for a, b in zip(ours, results[f"{key}.{peer}"])]
        spread = f" ({min(per_round):.2f}-{max(per_round):.2f})" if len(per_round) > 1 else ""
        met = "yes" if ratio >= goal else "no"
        lines.append(
            f"| {name} | {shown(ours)} | {listed} | {ratio:.2f}x{spread} {peer} (goal {goal:g}x) | {met} |"
        )

    row("training step, tutorial CNN, b25: vs PyTorch channels-last", "train", 1.0, ["pytorch-cl"])
    row("training step, tutorial CNN, b25: vs Keras on TensorFlow", "train", 1.0, ["keras-tensorflow"])
    row("inference, tutorial CNN, b25: vs the faster of TensorFlow and PyTorch", "infer", 1.0)
    row("VGG16 forward, 224, batch 1: vs the faster of PyTorch and Keras", "vgg16-b1", 1.0)
    row("VGG16 forward, 224, batch 8: vs the faster of PyTorch and Keras", "vgg16-b8", 1.0)
    row("input pipeline, one core: vs OpenCV", "pipeline-1", 1.5, ["opencv"])
    middle = medians(results)
    if "pipeline-1.cxr" in middle and "pipeline-all.cxr" in middle:
        cores = os.cpu_count() or 1
        scale = middle["pipeline-all.cxr"] / middle["pipeline-1.cxr"]
        lines.append(
            f"| input pipeline, {cores} cores vs one | {shown(results['pipeline-all.cxr'])} | "
            f"OpenCV pool {middle.get('pipeline-all.opencv', float('nan')):.1f} | {scale:.2f}x on {cores} cores | |"
        )
    for batch, key in [(25, "train-cuda"), (100, "train-cuda-b100")]:
        if f"{key}.cxr" in results or peers(results, key):
            row(f"training step on the GPU, b{batch}: vs PyTorch on the same GPU", key, 0.5)
    peak = middle.get("peak.gflops")
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
            ours = middle.get(f"{key}.cxr")
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every comparison (default 3)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "report.md"))
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    python = peer_python(args)
    gpu = has_nvidia_gpu()
    results = {}
    run(["cargo", "build", "--release", "--benches", "--bin", "cxr"], {})
    if gpu:
        run(["cargo", "build", "--release", "--features", "cuda", "--bench", "train_step"], {})
    bench_dir = os.path.join(ROOT, "benches")
    records = tempfile.mkdtemp(prefix="cxr-bench-records-")
    run(["cargo", "run", "--release", "--quiet", "--", "tfrecord", "write", "data/chest_xray/val", records], {})
    cores = str(os.cpu_count() or 1)
    # Each comparison: cxr's command, then its peers'.
    comparisons = [
        [["cargo", "bench", "--bench", "fp32_peak"]],
        # Eight training steps on every side, after two warm-up steps: a step of any of
        # them now and then takes twice its usual time on a shared VM.
        [
            (["cargo", "bench", "--bench", "train_step"], {"STEPS": "8"}, False),
            ([python, "benches/pytorch_train_step.py"], {"STEPS": "8"}, False),
            ([python, "benches/keras_train_step.py"], {"STEPS": "8"}, False),
        ],
        [
            ["cargo", "bench", "--bench", "models"],
            [python, "benches/pytorch_models.py"],
            [python, "benches/keras_models.py"],
        ],
        [
            (["cargo", "bench", "--bench", "pipeline"], {"WORKERS": "1"}, True),
            ([python, "benches/pipeline_python.py", records], {"WORKERS": "1"}, True),
        ],
        [
            (["cargo", "bench", "--bench", "pipeline"], {"WORKERS": cores}, False),
            ([python, "benches/pipeline_python.py", records], {"WORKERS": cores}, False),
        ],
    ]
    if gpu:
        for batch in ["25", "100"]:
            on_gpu = {"DEVICE": "cuda:0", "BATCH": batch, "STEPS": "20"}
            comparisons.append([
                (["cargo", "bench", "--features", "cuda", "--bench", "train_step"], on_gpu, False),
                ([python, "benches/pytorch_train_step.py"], dict(on_gpu, DEVICE="cuda"), False),
            ])
    try:
        for round_number in range(args.rounds):
            print(f"=== round {round_number + 1} of {args.rounds}", flush=True)
            for commands in comparisons:
                ordered = commands if round_number % 2 == 0 else commands[::-1]
                for command in ordered:
                    cmd, env, pin = command if isinstance(command, tuple) else (command, {}, False)
                    run(cmd, results, env=dict(env, PYTHONPATH=bench_dir), pin=pin)
    finally:
        shutil.rmtree(records, ignore_errors=True)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = f"{cpu} ({instruction_set()}), {os.cpu_count()} cores"
    if gpu:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
        machine += f", GPU {names.stdout.strip().splitlines()[0]}" if names.stdout.strip() else ", a GPU"
    text = report(results, machine, args.rounds)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print()
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
