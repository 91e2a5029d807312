"""Data layer: standard tables, loaders, validation and the P1 CTR sample builder."""
