"""Layer 6, viz: figures and the HTML report, drawn from a batch's results (never gating)."""
