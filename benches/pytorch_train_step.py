"""The PyTorch peer of benches/train_step.rs: full training steps (forward in training
mode, BCE with logits, backward, Adam) of the tutorial CNN on batches of 25 images of
180 x 180 x 3, in both memory layouts, on the CPU (or DEVICE=cuda, beside
`cxr devices --check cuda:0`).

    python3 -m venv /tmp/pytorch && /tmp/pytorch/bin/pip install torch torchvision
    /tmp/pytorch/bin/python benches/pytorch_train_step.py
"""
import os
import time

import torch

from pytorch_models import xray_cnn

STEPS = int(os.environ.get("STEPS", "3"))
BATCH = int(os.environ.get("BATCH", "25"))
DEVICE = os.environ.get("DEVICE", "cpu")


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def run(channels_last):
    torch.manual_seed(0)
    model = xray_cnn().train().to(DEVICE)
    x = torch.rand(BATCH, 3, 180, 180, device=DEVICE) * 255
    y = torch.randint(0, 2, (BATCH, 1), device=DEVICE).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x / 255.0), y)
        loss.backward()
        opt.step()

    # Two warm-up steps, as the Keras peer and cxr take.
    step()
    step()
    sync()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    sync()
    per = (time.perf_counter() - start) / STEPS
    layout = "channels-last" if channels_last else "channels-first"
    print(f"PyTorch {torch.__version__} tutorial CNN ({layout}, {DEVICE}), batch {BATCH}: {per:.2f} s per step, {BATCH / per:.1f} images/s")
    key = "train" + ("" if DEVICE == "cpu" else "-cuda") + ("" if BATCH == 25 else f"-b{BATCH}")
    print(f"RESULT {key}.pytorch-{'cl' if channels_last else 'cf'} {BATCH / per:.3f}")


if __name__ == "__main__":
    print(f"{torch.get_num_threads()} threads")
    run(False)
    run(True)
