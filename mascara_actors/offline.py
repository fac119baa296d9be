"""Keep astropy off the network.

A station has no guaranteed internet link, and a reduction that stalls on a download (or
fails a month after an ``astropy-iers-data`` release) loses frames. This module pins the
astropy configuration so that every time-scale conversion uses the tables bundled with
``astropy-iers-data`` and nothing is ever fetched (see reference/ecosystem.md section 5).

What stays the caller's job: never call ``EarthLocation.of_site`` (it downloads the site
registry; with the settings below it raises instead), build locations with
``EarthLocation.from_geodetic`` from configured numbers. Beyond the end of the bundled IERS
table astropy's ``IERS_Auto`` silently clamps UT1-UTC; :mod:`mascara_actors.sidereal` checks
the table range itself when asked to use it.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

__all__ = ["configure_astropy_offline", "default_cache_dir"]

log = logging.getLogger(__name__)

_installed = False


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mascara-actors``, or ``~/.cache/mascara-actors`` when unset."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mascara-actors"


def _install_cached_iers() -> None:
    """Use the bundled IERS-A/B tables through a FITS copy in the cache.

    Parsing the bundled text tables costs about 1.3 s in every process that computes an
    altitude (the reducer's and the binner's workers, the night planning); reading the
    same table back from FITS costs a fifth of that, with bit-identical results. The
    copy is named by the astropy and astropy-iers-data versions and made anew when
    either changes or the file does not read.
    """
    from importlib.metadata import version

    from astropy.table import QTable
    from astropy.utils import iers

    from mascara_actors.atomic_files import atomic_write_bytes

    name = f"iers-astropy{version('astropy')}-data{version('astropy-iers-data')}.fits"
    path = default_cache_dir() / name
    try:
        table = iers.IERS_Auto(QTable.read(path))
    except (OSError, ValueError, KeyError, TypeError):
        table = iers.IERS_Auto.open()
        buffer = io.BytesIO()
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # long meta keys become HIERARCH cards
                table.write(buffer, format="fits")
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buffer.getvalue(), durable=False, shared=True)
        except Exception as exc:  # a cache that cannot be written only costs time
            log.warning("IERS table not cached in %s: %s", path, exc)
    iers.earth_orientation_table.set(table)


def configure_astropy_offline() -> None:
    """Configure astropy so that it never touches the network.

    Sets, for the whole process:

    - ``astropy.utils.iers.conf.auto_download = False``: use the bundled IERS-A/B and
      leap-second tables, never fetch ``finals2000A.all`` or ``Leap_Second.dat``.
    - ``astropy.utils.iers.conf.auto_max_age = None``: without this, any UT1 conversion of a
      date past the bundled predictions raises ``ValueError`` once the data package is more
      than 30 days old, and the leap-second table warns when it is stale.
    - ``astropy.utils.data.conf.allow_internet = False``: any other download attempt
      (site registry, remote files) raises at once instead of waiting on a socket.

    - the IERS table read from a cached FITS copy (:func:`_install_cached_iers`).

    Idempotent: calling it again sets the same values and does nothing else.
    """
    from astropy.utils import data, iers

    global _installed
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    data.conf.allow_internet = False
    if not _installed:
        _installed = True
        _install_cached_iers()
        # astropy checks its leap-second table (file system calls) at the first UTC
        # conversion of the process: do it now, at start-up, never on an event loop
        from astropy.time import Time

        _ = Time(60000.0, format="mjd", scale="utc").tai
    log.debug("astropy configured offline (IERS auto_download off, auto_max_age None)")
