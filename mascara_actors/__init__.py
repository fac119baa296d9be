"""mascara-actors: the real-time reduction system of a MASCARA all-sky camera station."""

from mascara_actors.offline import configure_astropy_offline

__version__ = "0.1.0"

# A station has no guaranteed network: astropy must never try to download anything.
configure_astropy_offline()
