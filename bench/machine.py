"""What machine a benchmark ran on: the CPU and the vector extensions that decide the kernels."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_description() -> str:
    """The CPU's model name and the vector extensions that decide TensorFlow's kernels: AMX,
    AVX-512 VNNI / BF16 (stock TF turns oneDNN on by default only with one of these), AVX-512, AVX2."""
    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        return model
    kinds = [name for name, flag in (("AMX", "amx_tile"), ("AVX-512 BF16", "avx512_bf16"),
                                     ("AVX-512 VNNI", "avx512_vnni"), ("AVX-512", "avx512f"), ("AVX2", "avx2"))
             if flag in flags]
    return f"{model} ({', '.join(kinds) or 'no AVX2'})"


def tf_kernels() -> str:
    """Which CPU kernels this process's TensorFlow runs: "oneDNN" or "Eigen" (TF_ENABLE_ONEDNN_OPTS, or
    TensorFlow's own choice by CPU when it is unset)."""
    from tensorflow.python.util import _pywrap_util_port  # deferred: only benches that run TF ask
    return "oneDNN" if _pywrap_util_port.IsMklEnabled() else "Eigen"
