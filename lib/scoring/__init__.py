"""Scoring methods (numbers per study that MONAI Label stores in the datastore) and the signals they and the
strategies rank studies by."""
