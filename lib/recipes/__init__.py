"""The recipes that make the shipped checkpoints (`liver-tumor demo-model`, `liver-tumor locator-model`)."""
