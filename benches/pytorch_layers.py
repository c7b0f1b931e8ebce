"""The PyTorch peer of benches/layers.rs: each layer of the tutorial CNN at the model's
own shapes (batch 25, 180 x 180), forward and backward, timed as the Rust bench times
them: the fastest of REPEATS runs (5) after one warm-up, the backward pass through a
loss that weights every output element differently, the loss's own time taken off.
Both memory layouts; every layer computes its input's gradient, as in the Rust bench
(the model itself does not need it for the first convolution). Compare on one core,
both sides pinned:

    RAYON_NUM_THREADS=1 taskset -c 1 cargo bench --bench layers
    taskset -c 1 target/bench-venv/bin/python benches/pytorch_layers.py
"""
import os

import torch
from torch import nn

import timing
from pytorch_models import sep

REPEATS = int(os.environ.get("REPEATS", "5"))
BATCH = 25


def fastest(f):
    return timing.fastest(f, REPEATS)


def time_layer(name, shape, layer, channels_last, total):
    layer = layer.train()
    x = torch.rand(*shape)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    forward = fastest(lambda: layer(x))
    y = layer(x)
    mix = torch.rand_like(y)

    def both():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        (layer(x) * mix).sum().backward()

    z = y.detach().requires_grad_(True)

    def loss():
        z.grad = None
        (z * mix).sum().backward()

    backward = max(fastest(both) - forward - fastest(loss), 0.0)
    total[0] += forward
    total[1] += backward
    print(f"{name:<44} {forward * 1e3:>8.2f} ms forward {backward * 1e3:>8.2f} ms backward")


def main():
    torch.manual_seed(0)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, fastest of {REPEATS} runs")
    for channels_last in [False, True]:
        print("channels-last" if channels_last else "channels-first")
        total = [0.0, 0.0]
        n = BATCH
        time_layer("rescaling 3 x 180 x 180", (n, 3, 180, 180), Rescale(), channels_last, total)
        conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        time_layer("conv + relu 3 -> 16, 180 x 180", (n, 3, 180, 180), conv, channels_last, total)
        conv = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        time_layer("conv + relu 16 -> 16, 180 x 180", (n, 16, 180, 180), conv, channels_last, total)
        time_layer("max-pool 16 x 180 x 180", (n, 16, 180, 180), nn.MaxPool2d(2), channels_last, total)
        size, c = 90, 16
        for f in [32, 64, 128, 256]:
            at = f"{size} x {size}"
            time_layer(f"separable + relu {c} -> {f}, {at}", (n, c, size, size), sep(c, f), channels_last, total)
            time_layer(f"separable + relu {f} -> {f}, {at}", (n, f, size, size), sep(f, f), channels_last, total)
            bn = nn.BatchNorm2d(f, eps=1e-3)
            time_layer(f"batch norm (training) {f} x {at}", (n, f, size, size), bn, channels_last, total)
            time_layer(f"max-pool {f} x {at}", (n, f, size, size), nn.MaxPool2d(2), channels_last, total)
            size //= 2
            c = f
        print(f"{'sum of the layers above':<44} {total[0] * 1e3:>8.2f} ms forward {total[1] * 1e3:>8.2f} ms backward")


class Rescale(nn.Module):
    def forward(self, x):
        return x / 255.0


if __name__ == "__main__":
    main()
