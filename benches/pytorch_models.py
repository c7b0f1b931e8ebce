"""The PyTorch peer numbers for benches/models.rs: the same forward passes on the CPU.

    pip install torch torchvision
    python3 benches/pytorch_models.py

Inference mode (`eval()`, `torch.inference_mode()`), all cores, both memory layouts
(channels-first and channels-last), one warm-up call, then the mean of the timed calls. `ONLY=vgg-layers` times VGG16's
convolutions one by one instead, as benches/models.rs does with the same setting. The tutorial CNN is written out as Keras builds it.
"""
import os
import time

import torch
import torchvision
from torch import nn

import timing


def sep(i, o):
    return nn.Sequential(nn.Conv2d(i, i, 3, padding=1, groups=i, bias=False), nn.Conv2d(i, o, 1), nn.ReLU())


def xray_cnn():
    blocks = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    c = 16
    for i, f in enumerate([32, 64, 128, 256]):
        blocks += [sep(c, f), sep(f, f), nn.BatchNorm2d(f, eps=1e-3), nn.MaxPool2d(2)]
        if i >= 2:
            blocks.append(nn.Dropout(0.2))
        c = f
    blocks.append(nn.Flatten())
    n = 256 * 5 * 5
    for units, rate in [(512, 0.7), (128, 0.5), (64, 0.3)]:
        blocks += [nn.Linear(n, units), nn.ReLU(), nn.BatchNorm1d(units, eps=1e-3), nn.Dropout(rate)]
        n = units
    blocks.append(nn.Linear(n, 1))
    return nn.Sequential(*blocks)


def bench(name, key, model, shape, repeats, channels_last):
    model.eval()
    x = torch.rand(*shape) * 255
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    per_batch = (time.perf_counter() - start) / repeats
    layout = "cl" if channels_last else "cf"
    print(f"{name:<32} ({layout}) batch {shape[0]:>3}: {per_batch * 1000:>8.1f} ms per batch, {shape[0] / per_batch:>7.1f} images/s")
    print(f"RESULT {key}.pytorch-{layout} {shape[0] / per_batch:.3f}")


def fastest(model, x, repeats):
    """The fastest of `repeats` calls of `model(x)` after one warm-up, in seconds."""
    with torch.inference_mode():
        return timing.fastest(lambda: model(x), repeats)


def vgg_layers(channels_last):
    """VGG16's convolutions one by one at batch 1, as `ONLY=vgg-layers` in benches/models.rs:
    each distinct shape's forward pass with bias and ReLU, the fastest of `REPEATS` runs (10)."""
    repeats = int(os.environ.get("REPEATS", "10"))
    shapes = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
              (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 14)]
    layout = "cl" if channels_last else "cf"
    total = 0.0
    for c, o, size in shapes:
        model = nn.Sequential(nn.Conv2d(c, o, 3, padding=1), nn.ReLU()).eval()
        x = torch.rand(1, c, size, size)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        best = fastest(model, x, repeats)
        gflops = 2 * o * c * 9 * size * size / best / 1e9
        print(f"VGG16 conv {c:>3} -> {o:>3}, {size:>3} x {size:<3} ({layout}): {best * 1e3:>7.2f} ms, {gflops:>5.1f} GFLOP/s")
        print(f"RESULT vgg16-conv-{c}-{o}-{size}.pytorch-{layout} {best * 1e3:.3f}")
        total += best
    print(f"all shapes once ({layout}): {total * 1e3:.1f} ms")
    if channels_last:
        return
    # The dense layers at batch 1 read their weights once per image (411 and 67 MB).
    for name, inputs, units in [("fc1", 25088, 4096), ("fc2", 4096, 4096)]:
        model = nn.Sequential(nn.Linear(inputs, units), nn.ReLU()).eval()
        best = fastest(model, torch.rand(1, inputs), repeats)
        print(f"VGG16 {name} {inputs} -> {units}, batch 1: {best * 1e3:.2f} ms")
        print(f"RESULT vgg16-{name}.pytorch {best * 1e3:.3f}")


def main():
    if os.environ.get("ONLY") == "vgg-layers":
        for channels_last in [False, True]:
            vgg_layers(channels_last)
        return
    print(f"PyTorch {torch.__version__} (CPU), {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    for channels_last in [False, True]:
        vgg16 = torchvision.models.vgg16()
        bench("VGG16 224x224", "vgg16-b1", vgg16, (1, 3, 224, 224), 5, channels_last)
        bench("VGG16 224x224", "vgg16-b8", vgg16, (8, 3, 224, 224), 2, channels_last)
        bench("tutorial CNN 180x180", "infer", xray_cnn(), (25, 3, 180, 180), 5, channels_last)


if __name__ == "__main__":
    main()
