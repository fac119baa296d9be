"""Benchmark of sidereal time keeping against astropy."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator

import erfa
import numpy as np

from bench._core import Figure, bench, figure
from mascara_actors.offline import configure_astropy_offline
from mascara_actors.sidereal import REFERENCE_LONGITUDE_DEG, REFERENCE_SITE

N_TIMES = 1_000_000
JD_FIRST = 2456293.5  # 2013-01-01 UTC
JD_LAST = 2466520.5  # 2041-01-01 UTC


def _best_of(repeats: int, fn: Callable[[], None]) -> float:
    """Shortest wall time of ``repeats`` calls, seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@bench("lstseq_speedup_vs_astropy")
def run() -> Iterator[Figure]:
    """Figure: lstseq_speedup_vs_astropy (x) - 1e6 times through local_sidereal_time.

    Both sides take the same 1e6 UTC Julian dates (2013-2040, fixed seed) to mean LST at the
    reference longitude with UT1 = UTC: ours through ``SiteReference.local_sidereal_time``
    (LST, lstidx and lstseq), astropy through ``Time(jd).sidereal_time("mean", longitude)``
    including building the ``Time``. Best of 5 runs for ours, of 2 for astropy (warm).
    """
    import astropy.units as u
    from astropy.time import Time
    from astropy.utils.exceptions import AstropyWarning

    configure_astropy_offline()
    jd = np.random.default_rng(20130101).uniform(JD_FIRST, JD_LAST, N_TIMES)
    longitude = REFERENCE_LONGITUDE_DEG * u.deg

    def ours() -> None:
        REFERENCE_SITE.local_sidereal_time(jd)

    def ours_quick() -> None:
        REFERENCE_SITE.local_sidereal_time(jd, quick=True)

    def theirs() -> None:
        t = Time(jd, format="jd", scale="utc")
        t.delta_ut1_utc = 0.0
        t.sidereal_time("mean", longitude=longitude)

    with warnings.catch_warnings():
        # dates past the leap-second and IERS tables (2027+) warn; the timing is unaffected
        warnings.simplefilter("ignore", AstropyWarning)
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        theirs()  # warm-up: loads the IERS tables once
        astropy_s = _best_of(2, theirs)
    ours()
    ours_s = _best_of(5, ours)
    quick_s = _best_of(5, ours_quick)
    yield figure(
        "lstseq_speedup_vs_astropy",
        round(astropy_s / ours_s, 1),
        "x",
        n_times=N_TIMES,
        ours_s=round(ours_s, 4),
        ours_quick_s=round(quick_s, 4),
        astropy_s=round(astropy_s, 3),
    )
