"""Scoring methods: numbers per study that MONAI Label stores in the datastore."""
