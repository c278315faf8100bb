"""Layer 4, analysis: per-sample quantification and paired statistics on gated results."""
