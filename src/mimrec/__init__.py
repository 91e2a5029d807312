"""mimrec: multi-modal content interest modelling for CTR prediction (the MIM paradigm)."""

__version__ = "0.1.0"
