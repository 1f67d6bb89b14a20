"""Typed functions: registration, validation, typed results and plain-callable use."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

import graphflow as gf


class Email(BaseModel):
    to: str
    body: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Pair(TypedDict):
    a: int
    b: int


def test_decorated_function_stays_a_plain_callable(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    assert add.name == "add"
    assert registry.get_function("add") is add


async def test_async_function_is_awaitable_directly(registry: gf.Registry) -> None:
    @gf.function(registry=registry, name="create_user_profile")
    async def create(email: str) -> dict[str, str]:
        return {"email": email}

    assert await create(email="a@b.c") == {"email": "a@b.c"}
    assert registry.find_function("create_user_profile") is create


def test_taken_name_is_a_registration_error(registry: gf.Registry) -> None:
    @gf.function(registry=registry, name="shared")
    def one() -> int:
        return 1

    with pytest.raises(gf.RegistrationError, match="'shared' is already registered"):

        @gf.function(registry=registry, name="shared")
        def two() -> int:
            return 2


def test_workflows_and_functions_share_one_namespace(registry: gf.Registry) -> None:
    @gf.function(registry=registry, name="thing")
    def thing() -> int:
        return 1

    with pytest.raises(gf.RegistrationError):

        @gf.workflow(registry=registry, name="thing")
        async def thing_flow(wf: gf.Workflow, data: None) -> None:
            return None


def test_reregistering_same_qualname_replaces(registry: gf.Registry) -> None:
    def make() -> gf.Function[[], int]:
        def same() -> int:
            return 1

        return gf.function(registry=registry)(same)

    first = make()
    second = make()
    assert registry.get_function("same") is second is not first


@pytest.mark.parametrize(
    ("annotation_fn", "data", "expected"),
    [
        ("model", {"to": "x@y.z", "body": "hi", "extra": 1}, Email(to="x@y.z", body="hi")),
        ("dataclass", {"x": 1, "y": "2"}, Point(1, 2)),
        ("typeddict", {"a": 1, "b": 2}, {"a": 1, "b": 2}),
    ],
)
def test_single_structured_parameter_receives_validated_data(
    annotation_fn: str, data: dict[str, object], expected: object
) -> None:
    def model(msg: Email) -> Email:
        return msg

    def dataclass_(p: Point) -> Point:
        return p

    def typeddict(p: Pair) -> Pair:
        return p

    fn = {"model": model, "dataclass": dataclass_, "typeddict": typeddict}[annotation_fn]
    registered: gf.Function[..., object] = gf.function(registry=gf.Registry())(fn)  # type: ignore[arg-type]
    args, kwargs = registered.validate_input(data)
    assert args == (expected,)
    assert kwargs == {}


def test_keyword_arguments_are_validated_against_annotations(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def scale(value: int, factor: float = 2.0) -> float:
        return value * factor

    assert scale.validate_input({"value": "3"}) == ((), {"value": 3, "factor": 2.0})
    with pytest.raises(gf.InputValidationError, match="value") as caught:
        scale.validate_input({"value": "not a number"}, workflow="w", run_id="r", step="s")
    assert caught.value.errors[0]["loc"] == ("value",)
    assert "step 's'" in str(caught.value)


def test_output_is_validated_and_rehydrated(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def make(to: str) -> Email:
        return Email(to=to, body="b")

    raw = make.io.dump_output(make(to="a"))
    assert make.io.load_output(raw) == Email(to="a", body="b")


def test_invalid_options_are_definition_errors(registry: gf.Registry) -> None:
    with pytest.raises(gf.DefinitionError, match="retries"):
        gf.function(registry=registry, retries=-1)(lambda: 1)
    with pytest.raises(gf.DurationError, match="'soon'"):
        gf.function(registry=registry, retry_delay="soon")(lambda: 1)


def test_errors_pickle_with_their_facts() -> None:
    import pickle

    error = gf.StepFailed(
        workflow="w", run_id="r", step="s", error=gf.ErrorInfo(type="ValueError", message="boom")
    )
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, gf.StepFailed)
    assert copy.step == "s"
    assert str(copy) == str(error)
    assert "ValueError: boom" in str(copy)
    plain = pickle.loads(pickle.dumps(gf.NonRetryableError("nope")))
    assert str(plain) == "nope"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1),
        ("5min", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (3, 3),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert gf.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["soon", "", "5 parsecs", -1, "1x", True])
def test_bad_durations_name_the_text(bad: object) -> None:
    with pytest.raises(gf.DurationError, match=repr(bad)):
        gf.parse_duration(bad)  # type: ignore[arg-type]


def test_var_keyword_function_receives_every_key(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def collect(required: int, **rest: object) -> dict[str, object]:
        return {"required": required, **rest}

    args, kwargs = collect.validate_input({"required": "2", "extra": "x"})
    assert args == ()
    assert kwargs == {"required": 2, "extra": "x"}
    assert collect(**kwargs) == {"required": 2, "extra": "x"}


def test_redefinition_in_one_module_is_refused(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def copy_pasted() -> int:
        return 1

    first_line = copy_pasted.fn.__code__.co_firstlineno
    with pytest.raises(gf.RegistrationError) as info:

        @gf.function(registry=registry)
        def copy_pasted() -> int:
            return 2

    places = re.findall(r"test_functions\.py:(\d+)", str(info.value))
    assert places[0] == str(first_line)  # the first place, then the second one
    assert int(places[1]) > first_line
    assert registry.get_function("copy_pasted").fn() == 1  # the first one stays


def test_workflow_redefinition_is_refused(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def flow(wf: gf.Workflow, data: None) -> int:
        return 1

    with pytest.raises(gf.RegistrationError, match="second definition"):

        @gf.workflow(registry=registry)
        async def flow(wf: gf.Workflow, data: None) -> int:
            return 2


def test_two_lambdas_under_one_name_clash(registry: gf.Registry) -> None:
    gf.function(name="double", registry=registry)(lambda x: x * 2)
    with pytest.raises(gf.RegistrationError, match="'double'"):
        gf.function(name="double", registry=registry)(lambda x: x + x)


def test_graph_redefinition_is_refused(registry: gf.Registry) -> None:
    gf.function(name="noop", registry=registry)(lambda: None)

    def declare() -> gf.GraphWorkflow:
        return gf.workflow_graph(name="g", nodes={"a": "noop"}, registry=registry)

    declare()
    declare()  # the same place again (a re-import): replaced, not refused
    with pytest.raises(gf.RegistrationError, match="second definition"):
        gf.workflow_graph(name="g", nodes={"a": "noop"}, registry=registry)


def test_reimporting_a_module_replaces_its_definitions(
    tmp_path: Path, registry: gf.Registry
) -> None:
    module = tmp_path / "reimported_flows.py"
    module.write_text(
        "import graphflow as gf\n@gf.function(registry=REGISTRY)\ndef f() -> int:\n    return 1\n"
    )
    code = compile(module.read_text(), str(module), "exec")
    for _ in range(2):  # the same file and lines twice, as a reload or a second import does
        exec(code, {"__name__": "reimported_flows", "REGISTRY": registry})
    assert registry.get_function("f").fn() == 1
