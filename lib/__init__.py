"""Liver and liver-tumour CT segmentation app for MONAI Label: the code behind apps/liver_tumor."""
