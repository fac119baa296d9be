"""Which of numpy's SIMD code paths a reducing process takes: :func:`prefer_fast_sort`.

The photometry sorts each star's sky-annulus pixels, 5,000 rows of 1,264 float32 a frame
(``photometry/measure.py``). numpy sorts them with x86-simd-sort, choosing its AVX-512
version wherever the CPU has AVX-512. On AMD Zen 4 that version is the slow one: its
partition step stores with ``vcompressps`` to memory, which Zen 4 runs in microcode. Those
rows sort in 44 ms with it and in 21 ms with the AVX2 version on the same core (a 1-d
sort of 6.4 million float32: 240 against 38 ms); a night reduces 8-14 % faster.
numpy chooses its paths once, when it is imported, from ``NPY_DISABLE_CPU_FEATURES``;
disabling ``X86_V4`` (AVX-512 F/CD/BW/DQ/VL) sends the sorts, and the ufuncs compiled for
that level, to their AVX2 versions. Zen 5 stores compressed vectors at full speed.

The choice changes results in their last bits (light-curve fluxes by about 1e-3 ADU: the
astrometry's transcendental functions differ by an ulp between the two paths), and an
archive night must give the bytes of its ``--replay``: every process that reduces must make
the same choice. Importing :mod:`mascara_actors` makes it, when numpy is not imported yet
(the command line, a Dask worker's task, the tests); child processes inherit it, and the
archive's local cluster starts its workers with it. Workers started by hand need it in
their environment (``dask worker`` imports numpy first); the archive run says so when they
lack it. A ``NPY_DISABLE_CPU_FEATURES`` already in the environment, even empty, is left
alone. Standard library only: this runs before numpy is imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "VARIABLE", "cpu_fields", "dispatch_environment", "prefer_fast_sort", "slow_avx512_sort",
    "this_cpu", "this_cpu_sorts_slowly",
]

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
_DISABLED = "X86_V4"
_ZEN4_FAMILY = 0x19  # AMD family 19h: Zen 3 (no AVX-512) and Zen 4


def cpu_fields(cpuinfo: str) -> dict[str, str]:
    """The fields of the first processor in ``cpuinfo`` (the text of ``/proc/cpuinfo``):
    its block describes them all."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def this_cpu() -> dict[str, str]:
    """:func:`cpu_fields` of this machine (empty where there is no ``/proc/cpuinfo``)."""
    try:
        return cpu_fields(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:  # not Linux
        return {}


def slow_avx512_sort(fields: dict[str, str]) -> bool:
    """True when the processor of :func:`cpu_fields` ``fields`` sorts slower with AVX-512
    than with AVX2: an AMD family 19h core with AVX-512 (Zen 4)."""
    try:
        family = int(fields.get("cpu family", ""))
    except ValueError:
        return False
    return (fields.get("vendor_id") == "AuthenticAMD" and family == _ZEN4_FAMILY
            and "avx512f" in fields.get("flags", "").split())


def this_cpu_sorts_slowly() -> bool:
    """:func:`slow_avx512_sort` of this machine's CPU."""
    return slow_avx512_sort(this_cpu())


def dispatch_environment() -> dict[str, str]:
    """The variables a new reducing process needs in its environment (empty when this
    CPU sorts well with AVX-512 or the variable is already set here, and so inherited)."""
    if VARIABLE in os.environ or not this_cpu_sorts_slowly():
        return {}
    return {VARIABLE: _DISABLED}


def prefer_fast_sort() -> bool:
    """Have numpy, when this process imports it, take the AVX2 sort on a CPU where AVX-512
    sorts slowly; True when the environment was changed.

    Does nothing once numpy is imported (its choice is made: changing the variable then
    would only split this process from its children).
    """
    if "numpy" in sys.modules:
        return False
    extra = dispatch_environment()
    os.environ.update(extra)
    return bool(extra)
