"""Domain exceptions of the model core."""


class ModelCoreError(Exception):
    """Base class of the model core's errors."""


class ModelNotFoundError(ModelCoreError):
    """The configured base model is missing or unreadable."""


class SnapshotError(ModelCoreError):
    """A snapshot or delta does not fit the model it is applied to."""


class FactError(ModelCoreError, ValueError):
    """A fact cannot be turned into a useful training example."""
