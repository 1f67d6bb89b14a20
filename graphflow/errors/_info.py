"""``ErrorInfo``: how an error is stored and shown (a pydantic model, so imported on first use)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ("ErrorInfo",)


class ErrorInfo(BaseModel):
    """A stored error: the exception's class name, its message and the formatted traceback."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"
