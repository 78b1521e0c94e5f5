"""Errors users read. Each carries one clear, actionable line; no traceback soup."""


class StchainError(Exception):
    """Base class: the message is meant for the user as is."""


class WeightsError(StchainError):
    """Missing, partial, corrupt or wrong checkpoints."""


class FootageError(StchainError):
    """Footage or masks that cannot be used."""


class JobError(StchainError):
    """A job file that does not match its schema."""


class Cancelled(StchainError):
    """The user cancelled; nothing was written."""

    def __init__(self, message: str = "cancelled by the user"):
        super().__init__(message)


class NumericalError(StchainError):
    """NaN or Inf appeared in a model output; names the stage."""
