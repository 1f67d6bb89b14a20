"""Storage: the ``Store`` protocol, its SQL implementation and ``open_store(url)``."""

from .base import (
    AttemptRecord as AttemptRecord,
)
from .base import (
    Fence as Fence,
)
from .base import (
    RunRecord as RunRecord,
)
from .base import (
    StepRecord as StepRecord,
)
from .base import (
    Store as Store,
)
from .base import (
    open_store as open_store,
)

__all__ = ("AttemptRecord", "Fence", "RunRecord", "StepRecord", "Store", "open_store")
