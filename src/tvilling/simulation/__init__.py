"""Simulation: behaviour models (Python state-space, FMU) that run beside the asset, calibration,
and what-if scenarios on a fork. The port every model kind implements is :mod:`.ports`."""
