#!/bin/bash
# On a lent GPU machine, from the checkout with .dev/bin.txz made by build.sh: the CUDA
# kernels' checks against the CPU ones, one training step against the CPU, the training
# step at batch 25 and 100, the main job, the layers, and PyTorch on the same GPU.
# Run through the device tool: command `bash .dev/run.sh`, carry .dev/bin.txz and
# .dev/run.sh (build.sh copies this file there).
cd "$(dirname "$0")/.."
D=.dev
(cd $D && xz -dc bin.txz | tar xf -) || (cd $D && python3 -c "import lzma,tarfile;tarfile.open(fileobj=lzma.open('bin.txz')).extractall()")
ls -la $D/bin
LIBS=""
for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libnccl.so.2; do
  f=$(find /opt /usr/local /usr/lib -name "$l" 2>/dev/null | head -1)
  echo "$l: $f"
  [ -n "$f" ] && LIBS="$LIBS:$(dirname $f)"
done
export LD_LIBRARY_PATH="${LIBS#:}:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
ldd $D/bin/cxr | grep -i "not found"
export RUST_BACKTRACE=1
echo "=== kernels vs CPU"
timeout 120 $D/bin/cuda_kernels --test-threads 1 --nocapture 2>&1 | grep -v "^$" | tail -40
echo "=== devices --check"
timeout 120 $D/bin/cxr devices --check cuda:0 2>&1 | tail -15
for b in 25 100; do
  echo "=== train_step batch $b"
  BATCH=$b STEPS=50 DEVICE=cuda:0 timeout 100 $D/bin/train_step 2>&1 | tail -3
done
echo "=== main job on the GPU"
( time timeout 150 $D/bin/cxr train --devices cuda:0 --out /tmp/out-gpu ) 2>&1 | tail -12
echo "=== layers"
DEVICE=cuda:0 timeout 100 $D/bin/layers 2>&1 | tail -25
for b in 25 100; do
  echo "=== pytorch batch $b"
  STEPS=20 DEVICE=cuda BATCH=$b timeout 100 python3 benches/pytorch_train_step.py 2>&1 | tail -4
done
