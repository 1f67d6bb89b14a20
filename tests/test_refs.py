from __future__ import annotations

import copy
import pickle
from typing import TYPE_CHECKING, Any

import pytest
from jsonpath_ng.ext.parser import parse as parse_jsonpath

import graphflow.refs as refs_module
from graphflow.errors import DefinitionError, GraphflowError
from graphflow.refs import (
    SKIPPED,
    Ref,
    RefResolutionError,
    RefUsageError,
    Scope,
    iter_refs,
    ref,
    resolve_refs,
)

if TYPE_CHECKING:
    from collections.abc import Callable

OUTPUT = {
    "email": "ada@example.com",
    "user": {"address": {"city": "London"}, "tags": ["a", "b"]},
    "items": [{"id": 1, "price": 5}, {"id": 2, "price": 50}],
}


def scope(**outputs: Any) -> Scope:
    return Scope(outputs={"fetch": OUTPUT, **outputs}, workflow_input={"user_id": "u1"})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (None, OUTPUT),
        ("email", "ada@example.com"),
        ("user.address.city", "London"),
        ("items[0].id", 1),
        ("items[-1].id", 2),
        ("user.tags[1]", "b"),
        ("$.user.address.city", "London"),
        ("$", OUTPUT),
    ],
)
def test_plain_path_gives_one_value(path: str | None, expected: object) -> None:
    assert ref("fetch", path).resolve(scope()) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.items[*].id", [1, 2]),
        ("items[*].id", [1, 2]),
        ("$..city", ["London"]),
        ("items[?(@.price > 10)].id", [2]),
        ("items[0:1].id", [1]),
        ("$.items[*].missing", []),
    ],
)
def test_jsonpath_query_always_gives_a_list(path: str, expected: list[object]) -> None:
    made = ref("fetch", path)
    assert made.many
    assert made.resolve(scope()) == expected


def test_missing_plain_path_is_an_error_naming_node_path_and_fix() -> None:
    with pytest.raises(RefResolutionError) as caught:
        resolve_refs({"city": ref("fetch", "user.address.zip")}, scope(), consumer="ship")
    message = str(caught.value)
    assert "ref('fetch', 'user.address.zip')" in message
    assert "node 'ship'" in message
    assert "no key 'zip'" in message
    assert "default=" in message
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, GraphflowError)
    assert caught.value.node == "fetch"
    assert caught.value.consumer == "ship"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("items[7].id", "has 2 items, no index [7]"),
        ("email.domain", "is a str, not an object with key 'domain'"),
        ("user[0]", "is a dict, not a list"),
    ],
)
def test_missing_path_error_says_where_it_stopped(path: str, problem: str) -> None:
    with pytest.raises(RefResolutionError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        ref("fetch", path).resolve(scope())


def test_missing_path_gives_default_when_given() -> None:
    assert ref("fetch", "user.phone", default="n/a").resolve(scope()) == "n/a"
    assert ref("fetch", "user.phone", default=None).resolve(scope()) is None


def test_default_is_a_fresh_copy_each_time() -> None:
    made = ref("fetch", "nothing", default={"tags": []})
    first = made.resolve(scope())
    first["tags"].append("x")
    assert made.resolve(scope()) == {"tags": []}


def test_ref_to_skipped_node_gives_default_or_none() -> None:
    lookup = scope(review=SKIPPED)
    assert ref("review").resolve(lookup) is None
    assert ref("review", "score").resolve(lookup) is None
    assert ref("review", "$.items[*]").resolve(lookup) is None
    assert ref("review", "score", default=0).resolve(lookup) == 0


def test_input_and_item_refs() -> None:
    lookup = scope().with_item({"id": 7})
    assert ref("$input", "user_id").resolve(lookup) == "u1"
    assert ref("$item", "id").resolve(lookup) == 7
    assert ref("$error").resolve(scope().with_error({"type": "E"})) == {"type": "E"}


def test_item_outside_for_each_is_an_error() -> None:
    with pytest.raises(RefResolutionError, match="no value yet"):
        ref("$item").resolve(scope())


def test_node_without_value_is_an_error() -> None:
    with pytest.raises(RefResolutionError, match="no value yet"):
        ref("later").resolve(scope())


def test_resolve_refs_walks_nested_templates_without_changing_them() -> None:
    template = {
        "to": ref("fetch", "email"),
        "meta": {"ids": (ref("fetch", "items[0].id"), 3), "input": ref("$input")},
        "subject": "Welcome!",
    }
    original = copy.deepcopy(template)
    resolved = resolve_refs(template, scope())
    assert resolved == {
        "to": "ada@example.com",
        "meta": {"ids": [1, 3], "input": {"user_id": "u1"}},
        "subject": "Welcome!",
    }
    assert template == original


def test_iter_refs_finds_every_ref() -> None:
    first, second = ref("a"), ref("b", "x")
    assert list(iter_refs({"k": [first, {"j": second}], "c": 1})) == [first, second]


# Typed Any, as in an untyped input callable (mypy would flag some of these on a Ref).
COMPUTING: list[tuple[str, Callable[[Any], object]]] = [
    ("string formatting", lambda r: f"Hi {r}"),
    ("string formatting", lambda r: str(r)),
    ("string formatting", lambda r: f"{r}"),
    ("string formatting", lambda r: "%s" % r),  # noqa: UP031
    ("arithmetic", lambda r: r + 1),
    ("arithmetic", lambda r: "Hi " + r),
    ("arithmetic", lambda r: -r),
    ("truth test", lambda r: bool(r)),
    ("truth test", lambda r: "yes" if r else "no"),
    ("truth test", lambda r: r or "fallback"),
    ("iteration", lambda r: list(r)),
    ("iteration", lambda r: len(r)),
    ("iteration", lambda r: "x" in r),
    ("indexing", lambda r: r["email"]),
    ("comparison", lambda r: r < 3),
    ("comparison", lambda r: r == "pro"),
    ("number conversion", lambda r: int(r)),
]


@pytest.mark.parametrize(("operation", "compute"), COMPUTING)
def test_computing_with_a_ref_is_refused(operation: str, compute: Callable[[Any], object]) -> None:
    with pytest.raises(RefUsageError) as caught:
        compute(ref("create_profile", "email"))
    assert operation in str(caught.value)
    assert "ref('create_profile', 'email')" in str(caught.value)
    assert isinstance(caught.value, DefinitionError)
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: ref(""), "not a non-empty string"),
        (lambda: ref(3), "not a non-empty string"),  # type: ignore[arg-type]  # misuse under test
        (lambda: ref("$inputs"), "unknown special node '$inputs'"),
        (lambda: ref("a", ""), "path is not a non-empty string"),
        (lambda: ref("a", "items[["), "does not parse"),
        (lambda: ref("a", "x", default=object()), "is not JSON"),
    ],
)
def test_bad_refs_are_refused_when_made(make: Callable[[], Ref], problem: str) -> None:
    with pytest.raises(RefUsageError, match=problem.replace("$", r"\$").replace("[", r"\[")):
        make()


def test_refs_compare_and_hash_by_value() -> None:
    assert ref("a", "x", default=[1]) == ref("a", "x", default=[1])
    assert ref("a", "x") != ref("a", "x", default=None)
    assert ref("a") != ref("b")
    assert len({ref("a", "x"), ref("a", "x"), ref("b")}) == 2


def test_repr_shows_the_call() -> None:
    assert repr(ref("a")) == "ref('a')"
    assert repr(ref("a", "x.y", default=0)) == "ref('a', 'x.y', default=0)"


def test_refs_are_immutable_and_pickle() -> None:
    made = ref("a", "items[*].id", default=[])
    with pytest.raises(AttributeError):
        made.node_id = "b"
    assert pickle.loads(pickle.dumps(made)) == made
    assert copy.deepcopy(made) == made


def test_paths_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(text: str) -> Any:
        calls.append(text)
        return parse_jsonpath(text)

    monkeypatch.setattr("jsonpath_ng.ext.parser.parse", counting)  # imported on first use
    refs_module._compile.cache_clear()
    for _ in range(3):
        ref("a", "user.email").resolve(Scope(outputs={"a": {"user": {"email": "e"}}}))
    assert calls == ["user.email"]
    refs_module._compile.cache_clear()
