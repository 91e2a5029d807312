"""Stage 1 of MIM: domain adaptation and modal alignment of the item encoder."""
