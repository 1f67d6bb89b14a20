"""Execution: steps, the imperative DSL, the graph scheduler and timers, all through the store."""
