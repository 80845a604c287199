"""Layer 1, the graph: load and normalise a model (load, fold), plan its spiking layers (plan), hold
its weights once (weights) and cut parts out of it (cut). Imports only the base modules and ops/."""
