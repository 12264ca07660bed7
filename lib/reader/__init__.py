"""The second reader: a lesion network at 1 mm beside the shipped model, and a reader of the tumour candidates
both give (docs/model-log.md, runs L2 and R1)."""
