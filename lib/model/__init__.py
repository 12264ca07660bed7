"""The network, its checkpoints (loading, saving, cards) and mixed precision around it."""
