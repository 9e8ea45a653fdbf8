"""The PyTorch peers' best setup, shared by bench/torch_reference.py and bench/torch_models.py.

Thread pools, the OpenMP wait policy, OpenBLAS's kernels and ATen's ISA are read once, when torch
(libgomp, OpenBLAS) loads: `pin_before_torch` must run before `import torch`. The other helpers
record what the process actually got, for the benchmarks' JSON. Nothing here imports torch.
"""
import os

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SETUP_VARS = THREAD_VARS + ("OMP_WAIT_POLICY", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ATEN_CPU_CAPABILITY")


def add_setup_args(ap):
    """--threads, --wait-policy, --openblas-coretype, --cpu-capability."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--wait-policy", default="PASSIVE", help="OMP_WAIT_POLICY set before torch loads")
    ap.add_argument("--openblas-coretype", default="detect",
                    help="'detect' (unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: OpenBLAS picks this CPU's kernels), "
                         "'inherit' (keep the environment's), or a core name (e.g. Haswell, SkylakeX)")
    ap.add_argument("--cpu-capability", default="best",
                    help="ATEN_CPU_CAPABILITY set before torch loads: 'best' (avx512 when the CPU has AVX-512 F/BW/VL/DQ, "
                         "else avx2 with AVX2+FMA; torch 1.13 itself stays on AVX2), default, avx2, avx512, or 'auto' (leave it to torch)")


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {k: (k in flags) for k in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16")}
    except OSError:
        pass
    return {}


def pin_before_torch(a):
    """Set the environment the parsed setup arguments ask for (before torch is imported)."""
    for var in THREAD_VARS:
        os.environ[var] = str(a.threads)
    os.environ["OMP_WAIT_POLICY"] = a.wait_policy
    if a.openblas_coretype == "detect":
        os.environ.pop("OPENBLAS_CORETYPE", None)
        os.environ.pop("OPENBLAS_L2_SIZE", None)
    elif a.openblas_coretype != "inherit":
        os.environ["OPENBLAS_CORETYPE"] = a.openblas_coretype
    if a.cpu_capability == "best":
        f = cpu_flags()
        if all(f.get(k) for k in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "fma")):
            os.environ["ATEN_CPU_CAPABILITY"] = "avx512"
        elif f.get("avx2") and f.get("fma"):
            os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
    elif a.cpu_capability != "auto":
        os.environ["ATEN_CPU_CAPABILITY"] = a.cpu_capability


def cpu_capability(torch, config):
    """The ISA torch dispatches to, and where that was read."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get is not None:
        return get(), "torch.backends.cpu.get_cpu_capability()"
    for line in config.splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip(), "torch.__config__.show()"
    return None, None


def loaded_blas():
    """The BLAS library this process actually loaded (Debian's BLAS_INFO=generic goes through the
    libblas.so.3 alternative) and, for OpenBLAS, the kernel core and threads it runs with."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                path = parts[5] if len(parts) >= 6 else ""
                if any(n in os.path.basename(path) for n in ("blas", "lapack", "gomp", "mkl")):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    res = {"libraries": sorted(libs)}
    for path in sorted(libs):
        if "openblas" not in path or "lapack" in path:
            continue
        try:
            import ctypes
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            res["openblas_corename"] = lib.openblas_get_corename().decode()
            res["openblas_config"] = lib.openblas_get_config().decode().strip()
            res["openblas_num_threads"] = lib.openblas_get_num_threads()
            res["openblas_parallel"] = {0: "sequential", 1: "pthreads", 2: "openmp"}.get(lib.openblas_get_parallel(), "?")
            break
        except (OSError, AttributeError):
            continue
    return res
