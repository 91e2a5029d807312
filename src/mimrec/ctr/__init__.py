"""Stage 3: CTR features, modules (target attention, ...), the CiUBM model and its training."""
