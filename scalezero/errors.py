"""Exceptions users may catch, importable without loading torch."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, tampered with or does not match the model."""
