"""The project's one user-facing exception type.

Every error a user can cause (a bad config, an instruction field out of range, a malformed
checkpoint, a model that does not fit, a missing simulator) is a :class:`LlmaccelError` subclass
whose message says what is wrong and how to fix it. The CLI prints the message without a
traceback and exits with status 2.
"""

__all__ = ["LlmaccelError"]


class LlmaccelError(ValueError):
    """Base class of every error a user can cause."""
