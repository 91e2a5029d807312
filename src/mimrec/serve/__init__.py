"""The scoring service (imports no training code)."""
