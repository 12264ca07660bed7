"""Synthetic abdominal CT phantoms with liver and tumour ground truth."""

from .study import ScanGeometry, Study, generate_study, study_id, study_paths, write_study

__all__ = ["ScanGeometry", "Study", "generate_study", "study_id", "study_paths", "write_study"]
