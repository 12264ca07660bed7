"""Benchmarks and the measurements they share."""
