"""Measures of a segmentation against ground truth, shared by training, the CLI, the benchmarks and the tests."""
