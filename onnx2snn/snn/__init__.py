"""Layer 2, the SNN: the rewrite of a planned ANN into a time-batched SNN of IFNeuron nodes (rewrite,
params, spiking_pool, time_axis) and the lowering of its IF loops to standard ops (unrolled)."""
