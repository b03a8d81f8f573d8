"""landslide-dvc.

Importing the package pins the CPU code paths of the numerical libraries to x86-64 AVX2, so that
the same locked versions (requirements.lock) give the same bytes on every x86-64 machine with AVX2,
with or without AVX-512 (docs/reliability.md). The libraries choose their SIMD kernels at run time
from the CPU's features, and the kernels round differently: numpy's float32 exp/log/sin/cos/tanh
under AVX-512 give other last bits than under AVX2, so the synthetic stand-in's bytes, and every
stage after it, changed between machines. Each library reads its setting once, when it loads, so
this runs before numpy or torch is imported: every stage script imports ``landslide_dvc`` first.

A variable the user already set wins; ``LANDSLIDE_PIN_CPU=0`` sets none of them, and neither does a
CPU without AVX2 (or not x86-64), where the caps could not hold and OpenBLAS would fault.
"""

from __future__ import annotations

import os
import platform
import warnings
from importlib import metadata

# numpy's AVX-512 dispatch targets, by numpy's names for them (numpy 2.4 renamed them after the
# x86-64 microarchitecture levels). Disabling them leaves numpy on its AVX2 (X86_V3) kernels.
NUMPY_AVX512_TARGETS_2_4 = "X86_V4 AVX512_ICL AVX512_SPR"
NUMPY_AVX512_TARGETS_2_0 = (
    "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
)

# The torch stack: ATen's own vectorised kernels, oneDNN's convolutions and MKL's BLAS each pick an
# ISA at load time; OpenBLAS (numpy's and scipy's BLAS) picks a core type. Each is capped at what an
# AVX2 machine runs natively. (Not MKL_CBWR=AVX2: MKL's "conditional numerical reproducibility" mode
# takes other code paths, and its training results differ from an AVX2 machine's.)
TORCH_AND_BLAS_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}


def numpy_avx512_targets() -> str:
    """The AVX-512 dispatch targets of the installed numpy, read without importing numpy."""
    try:
        major, minor = (int(part) for part in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return NUMPY_AVX512_TARGETS_2_4
    return NUMPY_AVX512_TARGETS_2_4 if (major, minor) >= (2, 4) else NUMPY_AVX512_TARGETS_2_0


def cpu_pins() -> dict[str, str]:
    """The environment variables that pin the CPU code paths (docs/reliability.md)."""
    return {"NPY_DISABLE_CPU_FEATURES": numpy_avx512_targets(), **TORCH_AND_BLAS_PINS}


def cpu_has_avx2() -> bool:
    """x86-64 with AVX2 (the CPU flags Linux reports; other systems on x86-64 are taken at their word)."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return True
    return "avx2" in flags.split()


def pin_cpu_code_paths() -> None:
    """Set the pins in this process's environment (inherited by its children), unless disabled."""
    if os.environ.get("LANDSLIDE_PIN_CPU", "1") == "0" or not cpu_has_avx2():
        return
    for name, value in cpu_pins().items():
        os.environ.setdefault(name, value)
    # Older numpy lists its targets differently; naming one it lacks only warns (and changes nothing).
    warnings.filterwarnings("ignore", message="You cannot disable CPU features", category=ImportWarning)


pin_cpu_code_paths()
