#!/usr/bin/env bash
# Builds cxr's CUDA benchmarks on a machine without the CUDA toolkit or a GPU, for a lent
# GPU machine that has no Rust toolchain (BENCHMARKS.md, "CUDA kernels"): NVIDIA's
# compiler and libraries from PyPI wheels (CUDA 13.0, the GPU machine's version), a stub
# libcuda.so.1 to link against (the driver's, found there at run time), then the
# binaries, stripped and packed into .dev/bin.txz for `benches/gpu/run.sh` to unpack.
# candle's quantized and MoE kernels, which cxr never calls, are built without ptxas
# optimisation: the build takes about 25 minutes on 2 cores instead of over an hour.
set -euo pipefail
cd "$(dirname "$0")/../.."
CU=/tmp/cu/nvidia/cu13
if [ ! -x $CU/bin/nvcc ]; then
  mkdir -p /tmp/cu/wheels
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d /tmp/cu/wheels \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cublas nvidia-curand nvidia-nccl-cu13
  for w in /tmp/cu/wheels/*.whl; do unzip -q -o "$w" -d /tmp/cu; done
  (cd $CU/lib && for l in cublas cublasLt curand nvrtc cudart; do ln -sf lib$l.so.* lib$l.so; done)
  ln -sf libnccl.so.2 /tmp/cu/nvidia/nccl/lib/libnccl.so
fi
if [ ! -e /tmp/cu/stub/libcuda.so ]; then
  mkdir -p /tmp/cu/stub
  echo '#include <cuda.h>' | gcc -E -I$CU/include -x c - | tr '\n' ' ' |
    grep -oE '(CUresult|const char \*) +(cu[A-Za-z0-9_]+) *\(' |
    sed -E 's/.* (cu[A-Za-z0-9_]+) *\(/\1/' | sort -u |
    awk '{print "void "$1"(void){}"}' >/tmp/cu/stub/stub.c
  gcc -shared -fPIC -o /tmp/cu/stub/libcuda.so /tmp/cu/stub/stub.c -Wl,-soname,libcuda.so.1
fi
mkdir -p /tmp/cu/wrap
cat >/tmp/cu/wrap/nvcc <<WRAP
#!/bin/sh
case "\$*" in
  *mmq_*|*moe_*|*mmvq_*) exec $CU/bin/nvcc -Xptxas -O0 "\$@" ;;
esac
exec $CU/bin/nvcc "\$@"
WRAP
chmod +x /tmp/cu/wrap/nvcc
export PATH=/tmp/cu/wrap:$CU/bin:$PATH CUDA_ROOT=$CU CUDA_PATH=$CU CUDA_HOME=$CU CUDA_COMPUTE_CAP=90
export LIBRARY_PATH=$CU/lib:/tmp/cu/stub:/tmp/cu/nvidia/nccl/lib
export CARGO_TARGET_DIR=target-cuda
cargo build --release --features cuda,nccl --bin cxr --bench train_step --bench layers --test cuda_kernels
rm -rf .dev/bin && mkdir -p .dev/bin
cp target-cuda/release/cxr .dev/bin/
for b in train_step layers cuda_kernels; do
  cp "$(ls -t target-cuda/release/deps/$b-* | grep -v '\.d$' | head -1)" .dev/bin/$b
done
strip .dev/bin/*
# The four binaries share candle's kernels: one stream with a large window packs them
# into about 11 MB (the device tool carries 64 MiB).
tar cf - -C .dev bin | xz --lzma2=preset=6,dict=192MiB -T1 >.dev/bin.txz
ls -la .dev/bin.txz
cp benches/gpu/run.sh .dev/run.sh
