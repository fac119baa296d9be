"""Re-reducing an archive of raw frames on Dask distributed, one task per camera-night:
:mod:`.scan` finds the camera-nights, :mod:`.task` is what a night's task is given and gives
back, :mod:`.night` reduces one (on a worker), :mod:`.run` runs them on a cluster,
:mod:`.manifest` keeps the record of a run."""
