"""The peer numbers for benches/models.rs: the same forward passes in Keras 3.

    pip install tensorflow-cpu            # Keras 3 on TensorFlow (benches/compare.py)
    python3 benches/keras_models.py
    pip install keras "jax[cpu]" numpy    # or on JAX
    KERAS_BACKEND=jax python3 benches/keras_models.py

Same shapes, inference mode, one warm-up call (which compiles the XLA program), then the
mean of the timed calls. The tutorial CNN is built as tests/fixtures/make_keras_models.py
builds it.
"""
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))

import keras
import numpy as np
from make_keras_models import xray_cnn


def bench(name, key, model, shape, repeats):
    x = np.random.default_rng(0).uniform(0, 255, size=shape).astype(np.float32)
    model.predict_on_batch(x)
    start = time.perf_counter()
    for _ in range(repeats):
        model.predict_on_batch(x)
    per_batch = (time.perf_counter() - start) / repeats
    print(f"{name:<32} batch {shape[0]:>3}: {per_batch * 1000:>8.1f} ms per batch, {shape[0] / per_batch:>7.1f} images/s")
    print(f"RESULT {key}.keras-{keras.backend.backend()} {shape[0] / per_batch:.3f}")


def main():
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, {os.cpu_count()} CPUs")
    vgg16 = keras.applications.VGG16(weights=None)
    bench("VGG16 224x224", "vgg16-b1", vgg16, (1, 224, 224, 3), 5)
    bench("VGG16 224x224", "vgg16-b8", vgg16, (8, 224, 224, 3), 2)
    bench("tutorial CNN 180x180", "infer", xray_cnn(180), (25, 180, 180, 3), 5)


if __name__ == "__main__":
    main()
