"""The benchmark commands as a user runs them."""

from .conftest import one_line_error, run_cli


def test_bench_accuracy_needs_studies_with_truth(tmp_path):
    (tmp_path / "truth").mkdir()
    line = one_line_error(run_cli("bench", "accuracy", "--studies", tmp_path))
    assert "has a label of the same name" in line
