"""Layer 3, simulation: onnxruntime sessions and run sizes from the memory budget (runtime, budget,
footprint), the step-by-step runner (stepwise) and the comparison with the ANN (evaluation)."""
