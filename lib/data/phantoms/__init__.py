"""Synthetic abdominal CT phantoms with liver and tumour ground truth."""

from .study import Study, generate_study, study_id, study_paths, write_study

__all__ = ["Study", "generate_study", "study_id", "study_paths", "write_study"]
