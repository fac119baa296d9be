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

import logging

__all__ = ["configure_astropy_offline"]

log = logging.getLogger(__name__)


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

    Idempotent: calling it again sets the same values and does nothing else.
    """
    from astropy.utils import data, iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    data.conf.allow_internet = False
    log.debug("astropy configured offline (IERS auto_download off, auto_max_age None)")
