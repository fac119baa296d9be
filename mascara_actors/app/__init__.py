"""The application layer: the one place that wires the camera, the actors and the console
together (the command line in :mod:`mascara_actors.cli` calls it)."""
