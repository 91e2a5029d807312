"""Stage 2, C-SFT: behaviour pairs, space-time negatives and multi-level InfoNCE fine-tuning."""
