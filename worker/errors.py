"""What goes wrong in the worker's world, as exceptions the service maps to answers (service/errors.py)."""

from __future__ import annotations


class NotReadyError(RuntimeError):
    """No memory to answer from yet: no snapshot published (the worker is preparing version 0), or the
    model is still loading."""


class LeadershipLost(RuntimeError):
    """The lease expired or another worker published: stop training and resynchronise."""


class PublishRefused(LeadershipLost):
    """Redis refused a delta: the lease is another worker's, or the version is not the next one."""


class ClientIdConflict(ValueError):
    """A client id already names a fact (or document) with other content: nothing was stored."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index  # which fact of the request (-1: the document)
