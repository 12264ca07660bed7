"""Active-learning strategies: which study to label next, and k-centre selection."""
