"""The MOSAIC trainer (SFT warm start, then online pairwise-preference GRPO)."""
