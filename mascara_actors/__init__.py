"""mascara-actors: the real-time reduction system of a MASCARA all-sky camera station.

Modules that use astropy's time scales or coordinates switch its downloads off when they
are imported (:func:`mascara_actors.offline.configure_astropy_offline`), so importing the
package itself stays light.
"""

__version__ = "0.1.0"
