"""Layer 5, study: the experimental design, the batch run over it and its executors."""
