"""Layer 4, calibration: statistics and phase 1 (stats, thresholds); phase 2 (targets, segments,
spikes, currents, if_kernel, calibrate, refit); the network check (guard)."""
