"""The network and its checkpoints: building, loading, publishing."""
