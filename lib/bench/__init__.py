"""The benchmarks behind `liver-tumor bench ...`, and the server process they drive."""
