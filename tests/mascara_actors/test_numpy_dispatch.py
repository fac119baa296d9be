"""A reducing process takes numpy's AVX2 sort on AMD Zen 4, where the AVX-512 one is slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mascara_actors.numpy_dispatch import (
    VARIABLE,
    cpu_fields,
    prefer_fast_sort,
    slow_avx512_sort,
    this_cpu_sorts_slowly,
)


def _cpuinfo(vendor: str, family: int, flags: str) -> str:
    block = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
             f"model\t\t: 17\nflags\t\t: fpu sse2 avx2 {flags}\n")
    # a second processor's block that says otherwise is not read
    return block + "\n" + block.replace(vendor, "Other").replace(str(family), "1")


@pytest.mark.parametrize(("vendor", "family", "flags", "slow"), [
    ("AuthenticAMD", 25, "avx512f avx512bw avx512vl avx512_vbmi2", True),  # Zen 4
    ("AuthenticAMD", 25, "vaes vpclmulqdq", False),  # Zen 3: no AVX-512
    ("AuthenticAMD", 26, "avx512f avx512bw avx512vl", False),  # Zen 5 compresses fast
    ("GenuineIntel", 6, "avx512f avx512bw avx512vl", False),  # the version written for it
])
def test_only_a_zen4_core_is_said_to_sort_slowly_with_avx512(vendor: str, family: int,
                                                            flags: str, slow: bool) -> None:
    assert slow_avx512_sort(cpu_fields(_cpuinfo(vendor, family, flags))) is slow


def test_a_cpuinfo_without_a_family_is_not_said_to_sort_slowly() -> None:
    assert not slow_avx512_sort(cpu_fields(""))
    assert not slow_avx512_sort(
        cpu_fields("vendor_id : AuthenticAMD\ncpu family : ?\nflags : avx512f\n"))


def _fresh_process(env: dict[str, str]) -> dict[str, object]:
    """What a new interpreter that imports the package, then numpy, ends with."""
    script = (
        "import json, os\n"
        "import mascara_actors\n"
        "import numpy\n"
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        "from mascara_actors.numpy_dispatch import prefer_fast_sort\n"
        f"print(json.dumps({{'value': os.environ.get({VARIABLE!r}), 'x86_v4': f['X86_V4'],"
        " 'again': prefer_fast_sort()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_importing_the_package_first_gives_numpy_the_fast_sort_on_this_cpu() -> None:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    slow = this_cpu_sorts_slowly()
    got = _fresh_process(env)
    assert got["value"] == ("X86_V4" if slow else None)
    if slow:
        assert got["x86_v4"] is False  # numpy took the variable: its AVX2 paths
    assert got["again"] is False  # once numpy is imported nothing changes


def test_a_setting_of_the_users_own_is_left_alone() -> None:
    got = _fresh_process({**os.environ, VARIABLE: ""})
    assert got["value"] == ""


def test_nothing_changes_in_a_process_that_has_imported_numpy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy  # noqa: F401  (alone, this file imports no numpy)

    monkeypatch.delenv(VARIABLE, raising=False)
    assert prefer_fast_sort() is False
    assert VARIABLE not in os.environ
