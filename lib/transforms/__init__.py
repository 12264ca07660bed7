"""Transforms MONAI lacks, for the path of one study through the app (each says what it adds)."""
