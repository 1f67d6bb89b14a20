"""The root error and the message helpers every error uses."""

from __future__ import annotations

from typing import Any

__all__ = ("GraphflowError", "where")


def _restore(cls: type[GraphflowError], facts: dict[str, Any]) -> GraphflowError:
    return cls(**facts)


class GraphflowError(Exception):
    """Root of every error graphflow raises."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self._facts = facts
        for key, value in facts.items():
            setattr(self, key, value)

    @property
    def message(self) -> str:
        """The full message."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        if not self._facts:
            return (type(self), self.args)
        return (_restore, (type(self), self._facts))


def where(workflow: str | None = None, run_id: str | None = None, step: str | None = None) -> str:
    """`` in workflow 'w', run 'r', step 's'`` for the facts given (empty for none)."""
    parts = []
    if workflow is not None:
        parts.append(f"workflow {workflow!r}")
    if run_id is not None:
        parts.append(f"run {run_id!r}")
    if step is not None:
        parts.append(f"step {step!r}")
    return " in " + ", ".join(parts) if parts else ""
