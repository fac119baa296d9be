"""Camera hardware layer: serial control, frame readout, simulated camera, recorded nights."""
