"""Active-learning strategies: which study to label next."""
