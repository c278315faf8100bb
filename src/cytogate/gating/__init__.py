"""Gating: templates, gate geometries and the engine that applies them."""
