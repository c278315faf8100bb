"""Simulated studies with ground truth, written as FCS through the io layer (tests, demos)."""
