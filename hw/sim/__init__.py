"""The simulated camera: the sky it sees, the device that exposes it, nights on disk.

One concept per module:

The sky
    :mod:`~hw.sim.sky` (:class:`~hw.sim.sky.SimulatedSky`: science, dark, bias and flat
    frames with their truth), :mod:`~hw.sim.render` (optics and detector, in electrons),
    :mod:`~hw.sim.effects` (transits and clouds).
The device (a separate process behind a pty and a readout socket)
    :mod:`~hw.sim.process` (start and stop it), :mod:`~hw.sim.device` (the process, put
    together from :mod:`~hw.sim.clock`, :mod:`~hw.sim.cooling`, :mod:`~hw.sim.sequencer`,
    :mod:`~hw.sim.frame_server`, :mod:`~hw.sim.pty_port`, :mod:`~hw.sim.commands` and
    :mod:`~hw.sim.faults`), :mod:`~hw.sim.device_config` (its configuration),
    :mod:`~hw.sim.exposure` (what its frame source is given; the default source) and
    :mod:`~hw.sim.sky_renderer` (the sky as its frame source).
Recorded nights
    :mod:`~hw.sim.recording` (render a night to disk), :mod:`~hw.sim.truth` (its
    ``truth.fits``), :mod:`~hw.sim.night_start` (when a night starts).

Nothing is re-exported here: importing one module does not load the sky (the device
process of a protocol test starts without the catalogue).
"""
