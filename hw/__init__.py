"""The camera hardware layer: drivers, links and frame sources; the simulated camera.

* :mod:`hw.protocol`, :mod:`hw.serial_link`, :mod:`hw.readout`: the control line (framing,
  the async host side) and the frame stream;
* :mod:`hw.driver`: what the camera actor needs from a camera, and :class:`SerialCamera`;
* :mod:`hw.source`: the :class:`~hw.source.FrameSource` contract, kept by
  :mod:`hw.live` (a camera), :mod:`hw.recorded` (recorded nights, paced or not), and
  checked by :mod:`hw.testing`;
* :mod:`hw.sim`: the simulated camera (device process, sky renderer, recorded nights).

``hw`` may import the science modules of :mod:`mascara_actors`, never its actors, the
application layer (``mascara_actors.app``, ``mascara_actors.cli``) or ``tui``.
"""
