"""The inference cascade: find the liver at 4 mm, cut its box from the study, paste the label back."""
