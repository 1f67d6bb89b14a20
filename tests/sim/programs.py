"""Random workflows from a small grammar, one interpreter workflow that runs them, and the oracle.

A program is JSON (it travels as the run's input), a list of nodes run in sequence:

    do       {"op": "do", "name", "inline": bool, "cost": s}   a step with a side effect
    retry    {"op": "retry", "name", "fails": n, "delay": s}   fails its first n attempts
    sleep    {"op": "sleep", "name", "seconds": s}             a durable sleep
    suspend  {"op": "suspend", "name"}                         the driver resumes it
    child    {"op": "child", "name", "program": [...]}         a child run of the same workflow
    gather   {"op": "gather", "name", "branches": [[...], ...]}  branches run at once

Every node turns the value before it into a value after it, deterministically, so ``evaluate``
(the oracle) knows what a run must return without running it: what a fault-free run returns.
"""

from __future__ import annotations

import asyncio
import zlib
from random import Random
from typing import Any

import anyio

import graphflow as gf

from .ledger import current_ledger

__all__ = (
    "REGISTRY",
    "WORKFLOW",
    "evaluate",
    "generate",
    "resume_data",
    "step_count",
    "suspends",
)

Node = dict[str, Any]
Program = list[Node]

WORKFLOW = "sim_program"
REGISTRY = gf.Registry()
"""The simulated programs' registry: one interpreter workflow and its step functions."""

_MODULUS = 1_000_003


def mix(name: str, value: int) -> int:
    """The value a step named ``name`` returns after ``value``."""
    return zlib.crc32(f"{name}:{value}".encode()) % _MODULUS


def resume_data(name: str) -> dict[str, int]:
    """What the driver resumes the suspend ``name`` with."""
    return {"v": zlib.crc32(name.encode()) % _MODULUS}


# --- generating ---------------------------------------------------------------------------------


class _Names:
    def __init__(self) -> None:
        self.count = 0

    def next(self, op: str) -> str:
        self.count += 1
        return f"{op} {self.count}"


def generate(rng: Random, *, depth: int = 0, names: _Names | None = None) -> Program:
    """A random program: 1-5 nodes at the top, fewer in nested ones, nesting at most 2 deep."""
    names = names or _Names()
    size = rng.randint(1, 5 if depth == 0 else 3)
    return [_node(rng, depth, names) for _ in range(size)]


def _node(rng: Random, depth: int, names: _Names) -> Node:
    ops = ["do"] * 5 + ["retry", "sleep", "sleep", "suspend"]
    if depth < 2:
        ops += ["child", "gather", "gather"]
    op = rng.choice(ops)
    name = names.next(op)
    match op:
        case "do":
            cost = rng.choice([0.0, 0.0, 0.05, 0.5, 3.0])
            return {"op": op, "name": name, "inline": rng.random() < 0.4, "cost": cost}
        case "retry":
            return {"op": op, "name": name, "fails": rng.randint(1, 3),
                    "delay": rng.choice([0.0, 0.5, 2.0])}  # fmt: skip
        case "sleep":
            return {"op": op, "name": name, "seconds": rng.choice([0.3, 0.8, 2.0, 5.0, 30.0])}
        case "suspend":
            return {"op": op, "name": name}
        case "child":
            return {"op": op, "name": name, "program": generate(rng, depth=depth + 1)}
        case _:
            branches = [
                generate(rng, depth=depth + 1, names=names) for _ in range(rng.randint(2, 3))
            ]
            return {"op": "gather", "name": name, "branches": branches}


def step_count(program: Program) -> int:
    """Nodes in ``program``, nested ones included."""
    total = 0
    for node in program:
        total += 1
        if node["op"] == "child":
            total += step_count(node["program"])
        elif node["op"] == "gather":
            total += sum(step_count(branch) for branch in node["branches"])
    return total


def suspends(program: Program) -> list[str]:
    """The names of the suspends a run of ``program`` waits on (not those of its children)."""
    names = []
    for node in program:
        if node["op"] == "suspend":
            names.append(node["name"])
        elif node["op"] == "gather":
            names.extend(name for branch in node["branches"] for name in suspends(branch))
    return names


# --- the oracle -----------------------------------------------------------------------------------


def evaluate(program: Program, value: int) -> dict[str, Any]:
    """What a run of ``program`` started with ``value`` returns (its fault-free output)."""
    values: dict[str, int] = {}
    return {"value": _evaluate_seq(program, value, values), "steps": values}


def _evaluate_seq(program: Program, value: int, values: dict[str, int]) -> int:
    for node in program:
        value = _evaluate_node(node, value, values)
    return value


def _evaluate_node(node: Node, value: int, values: dict[str, int]) -> int:
    name = node["name"]
    match node["op"]:
        case "do" | "retry":
            value = mix(name, value)
        case "sleep":
            return value
        case "suspend":
            value = (value + resume_data(name)["v"]) % _MODULUS
        case "child":
            value = evaluate(node["program"], value)["value"]
        case _:
            results = [_evaluate_seq(branch, value, values) for branch in node["branches"]]
            value = sum(results) % _MODULUS
    values[name] = value
    return value


# --- running: the interpreter workflow and its step functions -----------------------------------


@gf.function(name="sim_effect", registry=REGISTRY)
async def sim_effect(value: int, cost: float) -> int:
    """A step with a side effect (reported to the ledger) that takes ``cost`` virtual seconds."""
    return await _effect(value, cost)


@gf.function(name="sim_flaky", registry=REGISTRY)
async def sim_flaky(value: int, fails: int) -> int:
    """Fails its first ``fails`` attempts, then returns like ``sim_effect``."""
    step = gf.current_step()
    await current_ledger().executing(step.run_id, step.step_name, step.attempt)
    if step.attempt <= fails:
        raise RuntimeError(f"planned failure of attempt {step.attempt} of {fails}")
    return mix(step.step_name, value)


async def _effect(value: int, cost: float) -> int:
    step = gf.current_step()
    await current_ledger().executing(step.run_id, step.step_name, step.attempt)
    if cost:
        await anyio.sleep(cost)
    return mix(step.step_name, value)


@gf.workflow(name=WORKFLOW, registry=REGISTRY)
async def sim_program(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, Any]:
    """Run the program in ``data["program"]`` from ``data["value"]``."""
    values: dict[str, int] = {}
    value = await _run_seq(wf, data["program"], data["value"], values)
    return {"value": value, "steps": values}


async def _run_seq(wf: gf.Workflow, program: Program, value: int, values: dict[str, int]) -> int:
    for node in program:
        value = await _run_node(wf, node, value, values)
    return value


async def _run_node(wf: gf.Workflow, node: Node, value: int, values: dict[str, int]) -> int:
    name = node["name"]
    match node["op"]:
        case "do" if node["inline"]:
            before, cost = value, node["cost"]
            value = await wf.do(name, lambda: _effect(before, cost))
        case "do":
            value = await wf.do(name, sim_effect, {"value": value, "cost": node["cost"]})
        case "retry":
            value = await wf.do(
                name, sim_flaky, {"value": value, "fails": node["fails"]},
                retries=node["fails"], retry_delay=node["delay"],
            )  # fmt: skip
        case "sleep":
            await wf.sleep(name, node["seconds"])
            return value
        case "suspend":
            data = await wf.suspend(name)
            value = (value + data["v"]) % _MODULUS
        case "child":
            output = await wf.do(name, WORKFLOW, {"program": node["program"], "value": value})
            value = output["value"]
        case _:
            results = await asyncio.gather(
                *(_run_seq(wf, branch, value, values) for branch in node["branches"])
            )
            value = sum(results) % _MODULUS
    values[name] = value
    return value
