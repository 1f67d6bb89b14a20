from __future__ import annotations

import re
from typing import Any

import pytest

from graphflow.errors import (
    BranchError,
    DurationError,
    GraphDefinitionError,
    GraphDurationError,
    RegistrationError,
)
from graphflow.functions import Function, Registry, function
from graphflow.graph.spec import GraphWorkflow, workflow_graph
from graphflow.refs import SKIPPED, RefResolutionError, Scope, ref


async def create_user_profile(email: str, user_id: str) -> dict[str, str]:
    return {"email": email, "user_id": user_id, "plan": "pro"}


def send_email(to: str, subject: str) -> dict[str, bool]:
    return {"sent": True}


def create_default_todos(data: dict[str, Any]) -> dict[str, int]:
    return {"todos": 3}


def review_account(data: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


def step(data: Any = None) -> Any:
    return data


@pytest.fixture
def registry() -> Registry:
    fresh = Registry()
    for fn in (create_user_profile, send_email, create_default_todos, review_account, step):
        function(registry=fresh)(fn)
    return fresh


def onboarding(registry: Registry, **overrides: Any) -> GraphWorkflow:
    """The seed graph of DESIGN §1."""
    spec: dict[str, Any] = {
        "name": "user_onboarding",
        "description": "Onboard a new user",
        "nodes": {
            "create_profile": "create_user_profile",
            "send_welcome": "send_email",
            "setup_defaults": "create_default_todos",
            "review": "review_account",
        },
        "config": {
            "create_profile": {"next": ["send_welcome", "setup_defaults"]},
            "send_welcome": {
                "input": lambda ref: {"to": ref("create_profile", "email"), "subject": "Welcome!"}
            },
            "setup_defaults": {"next": {"pro": "review"}, "retries": 2},
        },
        "registry": registry,
    }
    spec.update(overrides)
    return workflow_graph(**spec)


def chain(registry: Registry, config: dict[str, Any], nodes: str = "a b c") -> GraphWorkflow:
    return workflow_graph(
        name="g", nodes=dict.fromkeys(nodes.split(), "step"), config=config, registry=registry
    )


def fact(error: Exception, name: str) -> object:
    """A fact the error keeps as an attribute (errors.py does not declare them for mypy)."""
    return vars(error)[name]


def definition_error(registry: Registry, **spec: Any) -> GraphDefinitionError:
    spec.setdefault("name", "g")
    with pytest.raises(GraphDefinitionError) as caught:
        workflow_graph(registry=registry, **spec)
    return caught.value


# --- the seed graph ---------------------------------------------------------------------------


def test_seed_graph_compiles_and_registers(registry: Registry) -> None:
    graph = onboarding(registry)
    assert registry.get_workflow("user_onboarding") is graph
    assert graph.description == "Onboard a new user"
    assert graph.identity == f"{__name__}:graph:user_onboarding"
    assert re.fullmatch(r"[0-9a-f]{64}", graph.hash)


def test_seed_graph_networkx_view(registry: Registry) -> None:
    graph = onboarding(registry).nx
    assert graph.nodes["create_profile"]["function"] == "create_user_profile"
    assert sorted(graph.edges(data="branch")) == [
        ("create_profile", "send_welcome", None),
        ("create_profile", "setup_defaults", None),
        ("setup_defaults", "review", "pro"),
    ]


def test_seed_graph_plan(registry: Registry) -> None:
    plan = onboarding(registry).plan
    assert plan.order == ("create_profile", "send_welcome", "setup_defaults", "review")
    assert plan.entries == ("create_profile",)
    assert plan.sinks == ("send_welcome", "review")
    setup = plan.nodes["setup_defaults"]
    assert setup.options.retries == 2
    assert setup.keys == frozenset({"pro"})
    assert dict(setup.successors) == {"pro": ("review",)}
    assert plan.nodes["review"].parents == ("setup_defaults",)
    assert plan.nodes["review"].in_degree == 1
    assert dict(plan.nodes["create_profile"].successors) == {
        None: ("send_welcome", "setup_defaults")
    }


def test_seed_graph_node_inputs(registry: Registry) -> None:
    plan = onboarding(registry).plan
    data = {"email": "ada@example.com", "user_id": "u1"}
    profile = {"email": "ada@example.com", "user_id": "u1", "plan": "pro"}
    lookup = Scope(outputs={"create_profile": profile}, workflow_input=data)
    assert plan.node_input("create_profile", lookup) == data
    assert plan.node_input("send_welcome", lookup) == {
        "to": "ada@example.com",
        "subject": "Welcome!",
    }
    assert plan.node_input("setup_defaults", lookup) == profile


def test_functions_may_be_given_as_objects(registry: Registry) -> None:
    fn = registry.get_function("send_email")
    assert isinstance(fn, Function)
    graph = workflow_graph(name="g", nodes={"a": fn}, registry=registry)
    assert graph.plan.nodes["a"].function == "send_email"


# --- default input, branches, for_each and output ---------------------------------------------


def test_several_parents_get_a_dict_with_skipped_as_none(registry: Registry) -> None:
    plan = chain(registry, {"a": {"next": "c"}, "b": {"next": "c"}}).plan
    lookup = Scope(outputs={"a": {"x": 1}, "b": SKIPPED})
    assert plan.node_input("c", lookup) == {"a": {"x": 1}, "b": None}
    assert plan.entries == ("a", "b")


def test_for_each_node_gets_each_item_by_default(registry: Registry) -> None:
    config = {
        "a": {"next": ["b", "c"]},
        "b": {"for_each": ref("a", "users"), "mode": "sequential"},
        "c": {"for_each": lambda ref: ref("a", "users"), "input": {"id": ref("$item", "id")}},
    }
    plan = chain(registry, config).plan
    lookup = Scope(outputs={"a": {"users": [{"id": 1}, {"id": 2}]}})
    assert plan.items("b", lookup) == [{"id": 1}, {"id": 2}]
    assert plan.nodes["b"].mode == "sequential"
    assert plan.nodes["c"].mode == "parallel"
    assert plan.node_input("b", lookup.with_item({"id": 1})) == {"id": 1}
    assert plan.node_input("c", lookup.with_item({"id": 2})) == {"id": 2}


def test_for_each_over_a_non_list_is_a_resolution_error(registry: Registry) -> None:
    plan = chain(registry, {"a": {"next": "b"}, "b": {"for_each": ref("a", "users")}}).plan
    with pytest.raises(RefResolutionError, match="for_each needs a list but got a dict"):
        plan.items("b", Scope(outputs={"a": {"users": {"id": 1}}}))


def test_branch_key_from_selection_or_branch_callable(registry: Registry) -> None:
    config = {
        "a": {"next": {"pro": "b", "basic": []}},
        "b": {"next": {"x": "c"}, "branch": lambda output: output["kind"]},
    }
    plan = chain(registry, config).plan
    assert plan.branch_key("a", selected="basic", output=None) == "basic"
    assert plan.branch_key("b", selected=None, output={"kind": "x"}) == "x"
    assert plan.branch_key("c", selected="ignored", output=None) is None


@pytest.mark.parametrize(
    ("selected", "problem"),
    [(None, "selected no branch key"), ("gold", "unknown branch key 'gold'")],
)
def test_branch_key_missing_or_unknown_is_a_branch_error(
    registry: Registry, selected: str | None, problem: str
) -> None:
    plan = chain(registry, {"a": {"next": {"pro": "b", "basic": "c"}}}).plan
    with pytest.raises(BranchError, match=problem) as caught:
        plan.branch_key("a", selected=selected, output=None, run_id="r1")
    assert "'basic', 'pro'" in str(caught.value)
    assert "run 'r1'" in str(caught.value)


def test_output_defaults_to_completed_sinks(registry: Registry) -> None:
    plan = chain(registry, {"a": {"next": ["b", "c"]}}).plan
    lookup = Scope(outputs={"a": 1, "b": 2, "c": SKIPPED})
    assert plan.run_output(lookup) == {"b": 2}


def test_output_template(registry: Registry) -> None:
    graph = workflow_graph(
        name="g",
        nodes={"a": "step", "b": "step"},
        config={"a": {"next": "b"}},
        output=lambda ref: {"total": ref("b", "n"), "user": ref("$input", "user")},
        registry=registry,
    )
    lookup = Scope(outputs={"a": {}, "b": {"n": 3}}, workflow_input={"user": "u"})
    assert graph.plan.run_output(lookup) == {"total": 3, "user": "u"}
    assert graph.output == {"total": ref("b", "n"), "user": ref("$input", "user")}


def test_on_error_handler_gets_the_error_payload(registry: Registry) -> None:
    plan = chain(registry, {"a": {"next": "b", "on_error": "c"}}).plan
    assert plan.nodes["c"].handles == ("a",)
    assert plan.nodes["c"].parents == ()
    assert plan.entries == ("a",)
    assert plan.sinks == ("b",)
    payload = {"error": {"type": "E", "message": "m"}, "step": "a", "input": None}
    assert plan.node_input("c", Scope(outputs={}).with_error(payload)) == payload


def test_same_spec_gives_same_plan_and_hash(registry: Registry) -> None:
    other = Registry()
    for fn in (create_user_profile, send_email, create_default_todos, review_account):
        function(registry=other)(fn)
    first, second = onboarding(registry), onboarding(other)
    assert first.plan.order == second.plan.order
    assert first.plan.topology == second.plan.topology
    assert first.hash == second.hash


def test_hash_is_the_one_stored_runs_carry(registry: Registry) -> None:
    # Runs store their graph's hash and refuse to replay under another one: the same graph must
    # hash the same in every version (computed on first use, as it is now, or at compile).
    @function(registry=registry)
    def a(x: int) -> int:
        return x

    graph = workflow_graph(
        name="g",
        nodes={"one": "a", "two": "a", "three": "a"},
        config={
            "one": {"next": {"k": "two", "j": ["three"]}, "branch": lambda o: "k"},
            "two": {"input": {"v": ref("one")}},
        },
        registry=registry,
    )
    assert graph.hash == "161de8965a2f32ff28122c68810be76da675d0a6d8ea837d9dba5384994b452d"
    assert graph.graph_hash == graph.hash


def test_hash_ignores_options_and_declaration_order(registry: Registry) -> None:
    base = onboarding(registry).hash
    reordered = onboarding(
        registry,
        nodes={
            "review": "review_account",
            "setup_defaults": "create_default_todos",
            "send_welcome": "send_email",
            "create_profile": "create_user_profile",
        },
    )
    assert reordered.hash == base
    assert reordered.plan.order == ("create_profile", "setup_defaults", "review", "send_welcome")


def test_hash_changes_with_structure(registry: Registry) -> None:
    base = onboarding(registry)
    config = {
        "create_profile": {"next": ["send_welcome", "setup_defaults"]},
        "send_welcome": {"input": lambda ref: {"to": ref("create_profile", "user_id")}},
        "setup_defaults": {"next": {"pro": "review"}},
    }
    assert onboarding(registry, config=config).hash != base.hash
    config["send_welcome"] = {"input": base.plan.nodes["send_welcome"].input}
    config["setup_defaults"] = {"next": {"gold": "review"}}
    assert onboarding(registry, config=config).hash != base.hash
    config["setup_defaults"] = {"next": {"pro": "review"}, "timeout": "5s"}
    assert onboarding(registry, config=config).hash == base.hash


def test_redefining_in_the_same_module_replaces(registry: Registry) -> None:
    first = onboarding(registry)
    second = onboarding(registry)
    assert registry.get_workflow("user_onboarding") is second is not first


def test_graph_name_taken_by_a_function_is_a_registration_error(registry: Registry) -> None:
    with pytest.raises(RegistrationError):
        workflow_graph(name="step", nodes={"a": "step"}, registry=registry)


# --- definition errors ------------------------------------------------------------------------


def test_empty_graph(registry: Registry) -> None:
    error = definition_error(registry, nodes={})
    assert fact(error, "graph") == "g"
    assert "no nodes" in str(error)


def test_cycle_is_named(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"a": "step", "b": "step", "c": "step"},
        config={"a": {"next": "b"}, "b": {"next": "c"}, "c": {"next": "a"}},
    )
    assert "cycle: a -> b -> c -> a" in str(error)
    assert "acyclic" in str(error)


def test_self_loop_is_a_cycle(registry: Registry) -> None:
    error = definition_error(registry, nodes={"a": "step"}, config={"a": {"next": "a"}})
    assert "cycle: a -> a" in str(error)


def test_cycle_through_on_error(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step", "b": "step"}, config={"a": {"on_error": "a"}}
    )
    assert "cycle: a -> a" in str(error)


def test_unknown_next_target(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step", "b": "step"}, config={"a": {"next": ["b", "c"]}}
    )
    assert fact(error, "node") == "a"
    assert "its next names unknown node 'c'" in str(error)
    assert "['a', 'b']" in str(error)


def test_unknown_function_suggests_a_near_name(registry: Registry) -> None:
    error = definition_error(registry, nodes={"a": "send_emial"})
    assert fact(error, "node") == "a"
    assert "unknown function 'send_emial' (did you mean 'send_email'?)" in str(error)
    assert "@gf.function" in str(error)


def test_plain_callable_is_not_a_function(registry: Registry) -> None:
    error = definition_error(registry, nodes={"a": lambda: None})
    assert "a plain callable, not a registered function" in str(error)


def test_function_object_from_another_registry(registry: Registry) -> None:
    other = function(name="elsewhere", registry=Registry())(step)
    error = definition_error(registry, nodes={"a": other})
    assert "'elsewhere' is not in this graph's registry" in str(error)


def test_config_for_undeclared_node(registry: Registry) -> None:
    error = definition_error(registry, nodes={"send": "step"}, config={"sned": {"retries": 1}})
    assert fact(error, "node") == "sned"
    assert "not declared in nodes" in str(error)
    assert "did you mean 'send'?" in str(error)


def test_unknown_config_option(registry: Registry) -> None:
    error = definition_error(registry, nodes={"a": "step"}, config={"a": {"retry": 2}})
    assert "unknown config option 'retry'" in str(error)
    assert "did you mean 'retries'?" in str(error)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"retries": -1}, "retries must be an integer >= 0, got -1"),
        ({"retries": True}, "retries must be an integer >= 0, got True"),
        ({"backoff": 0.5}, "backoff must be a number >= 1, got 0.5"),
        ({"mode": "parallel"}, "it has mode= but no for_each"),
        ({"for_each": ref("$input"), "mode": "batch"}, "mode must be 'parallel' or 'sequential'"),
        ({"for_each": "users"}, "for_each must be a ref to a list, got 'users'"),
        ({"for_each": lambda ref: ["x"]}, "for_each must be a ref to a list"),
        ({"branch": lambda out: "x"}, "branch= but its next is not a dict of branch keys"),
        ({"next": {"x": "b"}, "branch": "x"}, "branch must be a callable"),
        ({"next": {}}, "its next is an empty dict of branch keys"),
        ({"next": {"": "b"}}, "branch key '', not a non-empty string"),
        ({"next": 3}, "its next must be a node id or a list of node ids"),
        ({"on_error": [1]}, "its on_error must be a node id or a list of node ids"),
        ({"input": "hello"}, "its input is str, not a mapping"),
        ({"input": {"when": object()}}, "which is not JSON"),
        ({"input": {"n": float("nan")}}, "which is not JSON"),
        ({"input": {1: "x"}}, "non-string key 1"),
    ],
)
def test_bad_option_values(registry: Registry, options: dict[str, Any], problem: str) -> None:
    error = definition_error(registry, nodes={"a": "step", "b": "step"}, config={"a": options})
    assert fact(error, "node") == "a"
    assert problem in str(error)


def test_bad_duration_is_a_public_duration_and_graph_definition_error_naming_the_node(
    registry: Registry,
) -> None:
    with pytest.raises(DurationError) as caught:
        workflow_graph(
            name="g", nodes={"a": "step"}, config={"a": {"timeout": "soon"}}, registry=registry
        )
    assert type(caught.value) is GraphDurationError  # a public name, in graphflow.errors
    assert type(caught.value).__module__ == "graphflow.errors"
    assert isinstance(caught.value, GraphDefinitionError)
    assert "at node 'a': its timeout 'soon' is not a duration" in str(caught.value)
    assert (caught.value.graph, caught.value.node, caught.value.option) == ("g", "a", "timeout")


@pytest.mark.parametrize("node_id", ["$a", "a:b", "a[0]", ""])
def test_reserved_node_ids(registry: Registry, node_id: str) -> None:
    error = definition_error(registry, nodes={node_id: "step"})
    assert "rename it" in str(error)


def test_ref_to_a_node_that_is_not_an_ancestor(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"a": "step", "b": "step", "c": "step"},
        config={"a": {"next": ["b", "c"]}, "c": {"input": {"x": ref("b", "x")}}},
    )
    assert fact(error, "node") == "c"
    assert "ref('b', 'x')" in str(error)
    assert "'b' is not an ancestor of 'c'" in str(error)
    assert "add a next path from 'b' to 'c'" in str(error)


def test_ref_to_an_unknown_node(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"a": "step", "b": "step"},
        config={"a": {"next": "b"}, "b": {"input": lambda ref: {"x": ref("nope")}}},
    )
    assert "there is no node 'nope'" in str(error)


def test_ref_to_itself(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step"}, config={"a": {"input": {"x": ref("a")}}}
    )
    assert "a ref to its own output" in str(error)


def test_ancestors_further_up_may_be_referred_to(registry: Registry) -> None:
    graph = chain(
        registry, {"a": {"next": "b"}, "b": {"next": "c"}, "c": {"input": {"x": ref("a")}}}
    )
    assert graph.plan.node_input("c", Scope(outputs={"a": 1, "b": 2})) == {"x": 1}


def test_item_ref_outside_for_each(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step"}, config={"a": {"input": {"x": ref("$item")}}}
    )
    assert "$item exists only in the input of a for_each node" in str(error)


def test_item_ref_in_for_each_itself(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step"}, config={"a": {"for_each": ref("$item", "xs")}}
    )
    assert "its for_each has ref('$item', 'xs')" in str(error)


def test_error_ref_outside_a_handler(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step"}, config={"a": {"input": {"e": ref("$error")}}}
    )
    assert "$error exists only in the input of an on_error handler" in str(error)


def test_computing_with_a_ref_in_an_input_callable(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"create_profile": "step", "send_welcome": "step"},
        config={
            "create_profile": {"next": "send_welcome"},
            "send_welcome": {"input": lambda ref: {"body": f"Hi {ref('create_profile', 'name')}"}},
        },
    )
    assert fact(error, "node") == "send_welcome"
    assert "string formatting" in str(error)
    assert "inside the node's function" in str(error)


def test_input_callable_that_raises(registry: Registry) -> None:
    error = definition_error(
        registry, nodes={"a": "step"}, config={"a": {"input": lambda ref: {"k": 1}["missing"]}}
    )
    assert "calling its input callable raised KeyError" in str(error)


def test_on_error_target_unknown(registry: Registry) -> None:
    error = definition_error(registry, nodes={"a": "step"}, config={"a": {"on_error": "undo"}})
    assert "its on_error names unknown node 'undo'" in str(error)


def test_on_error_handler_cannot_be_a_next_target(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"a": "step", "b": "step", "undo": "step"},
        config={"a": {"next": "undo", "on_error": "undo"}},
    )
    assert "'undo', which is an on_error handler" in str(error)


def test_on_error_handler_cannot_have_next(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"a": "step", "b": "step", "undo": "step"},
        config={"a": {"on_error": "undo"}, "undo": {"next": "b"}},
    )
    assert fact(error, "node") == "undo"
    assert "handlers end the failing path" in str(error)


def test_handler_refs_only_what_every_source_resolved(registry: Registry) -> None:
    nodes = {"a": "step", "b": "step", "c": "step", "undo": "step"}
    config: dict[str, Any] = {
        "a": {"next": ["b", "c"]},
        "b": {"on_error": "undo"},
        "c": {"on_error": "undo"},
        "undo": {"input": {"a": ref("a"), "why": ref("$error", "error.message")}},
    }
    graph = workflow_graph(name="g", nodes=nodes, config=config, registry=registry)
    assert graph.plan.nodes["undo"].handles == ("b", "c")
    config["undo"] = {"input": {"b": ref("b")}}
    error = definition_error(registry, nodes=nodes, config=config)
    assert "'b' is not an ancestor of 'undo'" in str(error)


def test_output_cannot_refer_to_a_handler(registry: Registry) -> None:
    error = definition_error(
        registry,
        nodes={"a": "step", "undo": "step"},
        config={"a": {"on_error": "undo"}},
        output={"x": ref("undo")},
    )
    assert fact(error, "node") is None
    assert "'undo' is an on_error handler" in str(error)
