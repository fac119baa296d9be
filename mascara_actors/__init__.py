"""mascara-actors: the real-time reduction system of a MASCARA all-sky camera station.

Modules that use astropy's time scales or coordinates switch its downloads off when they
are imported (:func:`mascara_actors.offline.configure_astropy_offline`), so importing the
package itself stays light. Importing it before numpy has numpy take its AVX2 sort on a CPU
whose AVX-512 sort is slow (:mod:`mascara_actors.numpy_dispatch` says why and what else).
"""

from mascara_actors.numpy_dispatch import prefer_fast_sort

__version__ = "0.1.0"

prefer_fast_sort()
