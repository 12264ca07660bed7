"""Transforms for the path of one study: load and check it, the seed's pre-processing and window fitting, clean-up,
the lesion report (each module says what MONAI lacks that it adds)."""
