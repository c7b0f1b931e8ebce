"""The Keras peer of benches/train_step.rs: full training steps (forward in training
mode, binary cross-entropy from the logit, backward, Adam) of the tutorial CNN on
batches of 25 images of 180 x 180 x 3, on the CPU, through `train_on_batch` as `fit`
runs it (a compiled `tf.function` on TensorFlow).

    pip install tensorflow-cpu
    python3 benches/keras_train_step.py        # KERAS_BACKEND=jax for JAX instead

The model is tests/fixtures/make_keras_models.py's, the one cxr's parity tests load.
"""
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))

import keras
import numpy as np
from make_keras_models import xray_cnn

STEPS = int(os.environ.get("STEPS", "5"))
BATCH = int(os.environ.get("BATCH", "25"))


def main():
    backend = keras.backend.backend()
    print(f"Keras {keras.__version__} on {backend}, {os.cpu_count()} CPUs")
    keras.utils.set_random_seed(0)
    model = xray_cnn(180)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(BATCH, 180, 180, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=(BATCH, 1)).astype(np.float32)
    # Two warm-up steps: the first traces and compiles the step function.
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(STEPS):
        model.train_on_batch(x, y)
    per = (time.perf_counter() - start) / STEPS
    print(f"Keras {keras.__version__} ({backend}) tutorial CNN, batch {BATCH}: {per:.2f} s per step, {BATCH / per:.1f} images/s")
    print(f"RESULT train.keras-{backend} {BATCH / per:.3f}")


if __name__ == "__main__":
    main()
