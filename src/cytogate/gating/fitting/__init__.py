"""Algorithms behind the data-driven gate kinds (mixtures, valleys, contours), apart from the
kinds' declarations in :mod:`cytogate.gating.kinds` (see docs/adaptive_gating.md)."""
