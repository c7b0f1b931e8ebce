"""The input-pipeline benchmark of benches/pipeline.rs in Python, for comparison:
read the bundled X-rays from TFRecords (framing parsed with struct, checksums not
checked), decode and resize to 180 x 180 with OpenCV (cv2.imdecode, cv2.resize
INTER_LINEAR) and with Pillow (Image.open, convert("RGB"), resize BILINEAR), on one
process and on every core.

    python3 -m venv /tmp/pybench && /tmp/pybench/bin/pip install opencv-python-headless pillow numpy
    cargo run --release -- tfrecord write data/chest_xray/val /tmp/cxr-tfrec
    /tmp/pybench/bin/python benches/pipeline_python.py /tmp/cxr-tfrec
"""

import io
import os
import struct
import sys
import time
from multiprocessing import Pool

import cv2
import numpy as np
from PIL import Image

PASSES = 8


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    at, out = 0, []
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        at += 12
        out.append(data[at : at + length])
        at += length + 4
    return out


def with_opencv(jpeg):
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return cv2.resize(img, (180, 180), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def with_pillow(jpeg):
    img = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((180, 180), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def run(name, fn, folder, workers):
    start = time.perf_counter()
    count = 0
    for _ in range(PASSES):
        jpegs = records(os.path.join(folder, "images.tfrec"))
        if workers == 1:
            for j in jpegs:
                fn(j)
                count += 1
        else:
            with Pool(workers) as pool:
                count += len(pool.map(fn, jpegs, chunksize=2))
    seconds = time.perf_counter() - start
    print(f"{name}, {workers} process(es): {count} images in {seconds:.2f} s, {count / seconds:.1f} images/s")
    key = "1" if workers == 1 else "all"
    print(f"RESULT pipeline-{key}.{name.lower()} {count / seconds:.3f}")


if __name__ == "__main__":
    folder = sys.argv[1]
    cv2.setNumThreads(1)
    cores = os.cpu_count() or 1
    print(f"OpenCV {cv2.__version__}, Pillow {Image.__version__}")
    workers_list = [int(w) for w in os.environ.get("WORKERS", f"1,{cores}").split(",")]
    for workers in workers_list:
        run("OpenCV", with_opencv, folder, workers)
        run("Pillow", with_pillow, folder, workers)
