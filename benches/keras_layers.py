"""The Keras peer of benches/layers.rs: each layer of the tutorial CNN at the model's own
shapes (batch 25, 180 x 180, channels last as Keras keeps them), forward and backward,
timed as the Rust bench and benches/pytorch_layers.py time them: the fastest of REPEATS
runs (5) after warm-ups, the backward pass through a loss that weights every output
element differently, the forward pass and the loss's own time taken off. Each step is
one `tf.function` without XLA, as Keras 3 runs a model's training step on a machine
without a GPU (`jit_compile="auto"` turns XLA off there: `Trainer._resolve_auto_jit_compile`);
`JIT=1` compiles with XLA instead (far slower per layer on a CPU). Every layer computes
its input's gradient.

    target/bench-venv/bin/python benches/keras_layers.py       # beside cargo bench --bench layers
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from keras import layers

import timing

REPEATS = int(os.environ.get("REPEATS", "5"))
JIT = os.environ.get("JIT", "0") == "1"
BATCH = 25


def fastest(f):
    # Two warm-ups: the first call of a `tf.function` traces and compiles it.
    return timing.fastest(f, REPEATS, warmups=2)


def time_layer(name, shape, layer, total):
    """`shape` is (n, c, h, w), as the other two benches name it; Keras gets n, h, w, c."""
    n, c, h, w = shape
    x = tf.random.uniform((n, h, w, c))
    layer.build(x.shape)
    y = layer(x, training=True)
    mix = tf.random.uniform(y.shape)

    @tf.function(jit_compile=JIT)
    def forward(x):
        return layer(x, training=True)

    @tf.function(jit_compile=JIT)
    def both(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * mix)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    @tf.function(jit_compile=JIT)
    def loss_alone(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_sum(z * mix)
        return tape.gradient(loss, z)

    # On the CPU a `tf.function` returns once its graph has run (no `.numpy()`: copying a
    # result out would be timed too).
    f = fastest(lambda: forward(x))
    b = fastest(lambda: both(x))
    l_ = fastest(lambda: loss_alone(y))
    backward = max(b - f - l_, 0.0)
    total[0] += f
    total[1] += backward
    print(f"{name:<44} {f * 1e3:>8.2f} ms forward {backward * 1e3:>8.2f} ms backward")


def main():
    keras.utils.set_random_seed(0)
    print(
        f"Keras {keras.__version__} on TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, "
        f"XLA {'on' if JIT else 'off'}, batch {BATCH}, fastest of {REPEATS} runs"
    )
    total = [0.0, 0.0]
    n = BATCH
    time_layer("rescaling 3 x 180 x 180", (n, 3, 180, 180), layers.Rescaling(1.0 / 255), total)
    conv = layers.Conv2D(16, 3, activation="relu", padding="same")
    time_layer("conv + relu 3 -> 16, 180 x 180", (n, 3, 180, 180), conv, total)
    conv = layers.Conv2D(16, 3, activation="relu", padding="same")
    time_layer("conv + relu 16 -> 16, 180 x 180", (n, 16, 180, 180), conv, total)
    time_layer("max-pool 16 x 180 x 180", (n, 16, 180, 180), layers.MaxPool2D(), total)
    size, c = 90, 16
    for f in [32, 64, 128, 256]:
        at = f"{size} x {size}"
        sep = layers.SeparableConv2D(f, 3, activation="relu", padding="same")
        time_layer(f"separable + relu {c} -> {f}, {at}", (n, c, size, size), sep, total)
        sep = layers.SeparableConv2D(f, 3, activation="relu", padding="same")
        time_layer(f"separable + relu {f} -> {f}, {at}", (n, f, size, size), sep, total)
        bn = layers.BatchNormalization()
        time_layer(f"batch norm (training) {f} x {at}", (n, f, size, size), bn, total)
        time_layer(f"max-pool {f} x {at}", (n, f, size, size), layers.MaxPool2D(), total)
        size //= 2
        c = f
    print(f"{'sum of the layers above':<44} {total[0] * 1e3:>8.2f} ms forward {total[1] * 1e3:>8.2f} ms backward")


if __name__ == "__main__":
    main()
