"""OpenTelemetry spans for runs and steps, only when a tracer provider is configured.

Each execution of a run (its first, and each after a wake, a resume or a recovery, in whatever
process) is a span ``workflow {name}``; each step attempt executed is a child span ``step {name}``
(a replayed step executes nothing and has none). The run's trace context is stored with the run:
the caller's span when ``start`` was called inside one, else the first execution's span, so every
later execution continues the same trace.

Only ``opentelemetry-api`` is imported (the extra ``graphflow[otel]``), lazily. Whether tracing is
on is decided once, when an engine opens (``tracer()``): without opentelemetry, or without a tracer
provider set by then (``trace.set_tracer_provider``), the engine holds ``None`` and a run costs one
``is None`` test where it starts and where it executes; nothing else happens.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

__all__ = ("RunTrace", "capture", "start_run", "tracer")

T = TypeVar("T")

_UNKNOWN: Any = object()
_api: Any = _UNKNOWN
"""``opentelemetry.trace`` once imported, ``None`` if it is not installed."""


def _trace_api() -> ModuleType | None:
    global _api
    if _api is _UNKNOWN:
        try:
            from opentelemetry import trace
        except ImportError:
            _api = None
        else:
            _api = trace
    result: ModuleType | None = _api
    return result


def tracer() -> Tracer | None:
    """The graphflow tracer, or ``None`` without opentelemetry or a configured tracer provider."""
    api = _trace_api()
    if api is None:
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return None  # nobody set a provider: every span would be thrown away
    found: Tracer = provider.get_tracer("graphflow")
    return found


def _inject(context: Context | None = None) -> str | None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    return json.dumps(carrier, sort_keys=True) if carrier else None


def _extract(stored: str | None) -> Context | None:
    if not stored:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    try:
        carrier = json.loads(stored)
    except ValueError:
        return None  # unreadable: the run starts a new trace rather than failing
    return TraceContextTextMapPropagator().extract(carrier) if isinstance(carrier, dict) else None


def capture(tracer: Tracer | None) -> str | None:
    """The caller's current span context as text to store with a new run, if tracing is on."""
    if tracer is None:
        return None
    api = _trace_api()
    assert api is not None
    if not api.get_current_span().get_span_context().is_valid:
        return None
    return _inject()


class RunTrace:
    """The span of one execution of a run, and the spans of its step attempts."""

    def __init__(self, tracer: Tracer, span: Span, run_id: str, workflow: str) -> None:
        api = _trace_api()
        assert api is not None
        self._api = api
        self._tracer = tracer
        self.span = span
        self._context = api.set_span_in_context(span)
        self._attributes = {"graphflow.run_id": run_id, "graphflow.workflow": workflow}

    def current(self) -> AbstractContextManager[Span]:
        """Make the run's span current, so spans made by the workflow's own code nest under it."""
        used: AbstractContextManager[Span] = self._api.use_span(self.span, end_on_exit=False)
        return used

    def stored_context(self) -> str | None:
        """This execution's span context as text, for a run that had none stored."""
        return _inject(self._context)

    def fail(self, error: BaseException) -> None:
        """Record why the run failed on its span."""
        self.span.record_exception(error)
        self.span.set_status(self._api.Status(self._api.StatusCode.ERROR, str(error)))

    def end(self, state: str | None) -> None:
        """End the execution's span; ``state`` is what was stored (``None``: given up)."""
        self.span.set_attribute("graphflow.state", state or "released")
        self.span.end()

    async def attempt(
        self,
        step: str,
        attempt: int,
        call: Awaitable[T],
        cause: Callable[[Exception], BaseException],
    ) -> T:
        """Await ``call`` inside a ``step {step}`` span, current while it runs.

        A failure is recorded on the span as ``cause(exception)``; a cancellation just ends it.
        """
        span = self._tracer.start_span(
            f"step {step}",
            context=self._context,
            attributes={**self._attributes, "graphflow.step": step, "graphflow.attempt": attempt},
        )
        with self._api.use_span(span, end_on_exit=True, record_exception=False,
                                set_status_on_exception=False):  # fmt: skip
            try:
                return await call
            except Exception as exc:
                error = cause(exc)
                span.record_exception(error)
                span.set_status(self._api.Status(self._api.StatusCode.ERROR, str(error)))
                raise


def start_run(tracer: Tracer, run_id: str, workflow: str, stored: str | None) -> RunTrace:
    """Start the span of one execution of a run, under its stored trace context."""
    from opentelemetry.context import Context

    span = tracer.start_span(
        f"workflow {workflow}",
        context=_extract(stored) or Context(),  # nothing stored: a new trace, whatever is current
        attributes={"graphflow.run_id": run_id, "graphflow.workflow": workflow},
    )
    return RunTrace(tracer, span, run_id, workflow)
