"""One TaskConfig per model, as in MONAI Label's sample apps; the model's name is its module's name."""
