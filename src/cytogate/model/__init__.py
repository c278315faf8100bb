"""Layer 2, model: what the numbers mean — panels (marker → channel), scales and compensation."""
