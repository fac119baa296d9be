"""``python -m mascara_actors.cli``: the ``mascara-actors`` command (the station starts its
camera processes so, with the interpreter it runs on)."""

import sys

from mascara_actors.cli import main

sys.exit(main())
