"""Graph workflows: declare (``workflow_graph``), compile (``Plan``) and render graphs."""

from __future__ import annotations as _annotations

from .plan import Plan as Plan
from .plan import PlanNode as PlanNode
from .plan import Topology as Topology
from .render import RenderError as RenderError
from .render import to_dot as to_dot
from .render import to_mermaid as to_mermaid
from .render import to_svg as to_svg
from .spec import GraphWorkflow as GraphWorkflow
from .spec import workflow_graph as workflow_graph

__all__ = (
    "GraphWorkflow",
    "Plan",
    "PlanNode",
    "RenderError",
    "Topology",
    "to_dot",
    "to_mermaid",
    "to_svg",
    "workflow_graph",
)
