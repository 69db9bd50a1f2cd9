"""Property-based fuzzing of ``POST /score`` through the gate, with the exact status expected.

Each generated case is a body and what the API must answer: deep nesting on both sides of
orjson's 1,024-level limit, bytes that are not UTF-8, JSON that is not an array of objects,
events with odd values (NUL, lone surrogates, huge or non-finite numbers, nested values),
too many events and too many bytes. A case that is answered with another status, or takes
more than five seconds (the defect hung for 120 s; a loaded CI machine needs the slack),
fails the test.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import api

MAX_EVENTS = 100  # the test runtime's BOTFILTER_MAX_BATCH_EVENTS
LIMIT = 1024

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def deep(draw) -> tuple[bytes, int, str | None]:
    depth = draw(st.integers(min_value=1, max_value=3 * LIMIT))
    if draw(st.booleans()):  # arrays all the way down
        body = b"[" * depth + b"]" * depth
        if depth > LIMIT:
            return body, 422, "body is nested deeper than 1024 levels"
        if depth == 1:
            return body, 422, "body holds no events: send 1 or more"
        return body, 422, "item 0 must be an event object, not an array"
    # An event carrying a nested extra field: read as long as it is within the limit (and
    # within the byte budget of one event: 6 bytes a level).
    k = depth
    body = b'[{"extra":' + b'{"x":' * k + b"1" + b"}" * k + b"}]"
    if k + 2 > LIMIT:
        return body, 422, "body is nested deeper than 1024 levels"
    if len(body) > api.body_budget(1):
        return body, 413, f"body of {len(body)} bytes exceeds 5120 bytes"
    return body, 200, None


@st.composite
def not_utf8(draw) -> tuple[bytes, int, str | None]:
    return b"\xff" + draw(st.binary(max_size=200)), 422, "body is not valid UTF-8 JSON"


@st.composite
def not_an_array(draw) -> tuple[bytes, int, str | None]:
    value = draw(json_values.filter(lambda v: not isinstance(v, list)))
    return json.dumps(value).encode(), 422, "body must be a JSON array of event objects"


@st.composite
def not_objects(draw, event: dict) -> tuple[bytes, int, str | None]:
    items = draw(st.lists(st.just(event) | json_values, min_size=1, max_size=6))
    first = next((i for i, it in enumerate(items) if not isinstance(it, dict)), None)
    if first is None:
        return json.dumps(items).encode(), 200, None
    return json.dumps(items).encode(), 422, f"item {first} must be an event object"


ODD_LITERALS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "123456789012345678901234567890",
    '"\\u0000"',
    '"\\ud800"',
    '"a\\u0000b"',
    '"' + "x" * 3000 + '"',
    "[[[[1]]]]",
    '{"a": {"b": null}}',
    "-0",
    "1.0e-400",
    "true",
)


@st.composite
def odd_event(draw, event: dict) -> tuple[bytes, int, str | None]:
    field = draw(st.sampled_from(sorted(event)))
    literal = draw(st.sampled_from(ODD_LITERALS) | json_values.map(json.dumps))
    text = json.dumps({**event, field: "@@ODD@@"}).replace('"@@ODD@@"', literal)
    return f"[{text}]".encode(), 200, None


@st.composite
def too_large(draw, event: dict) -> tuple[bytes, int, str | None]:
    if draw(st.booleans()):
        n = draw(st.integers(min_value=MAX_EVENTS + 1, max_value=MAX_EVENTS + 50))
        return json.dumps([event] * n).encode(), 413, f"{n} events exceed the limit of 100"
    extra = draw(st.integers(min_value=1, max_value=5000))
    body = b"[" + b" " * (MAX_EVENTS * api.BYTES_PER_EVENT + 1024 + extra) + b"]"
    return body, 413, "bytes"


@st.composite
def blank(draw) -> tuple[bytes, int, str | None]:
    return draw(st.sampled_from([b"", b" ", b"\n\t ", b"\r\n"])), 422, "empty body"


@pytest.fixture(scope="module")
def fuzz_client(make_runtime, make_client, world):
    return make_client(make_runtime(world))


def test_score_answers_every_generated_body_with_the_exact_status(world, fuzz_client) -> None:
    event = {**world["items"][0]}
    cases = st.one_of(
        deep(),
        not_utf8(),
        not_an_array(),
        not_objects(event),
        odd_event(event),
        too_large(event),
        blank(),
    )
    seen: dict[int, int] = {}

    @given(case=cases)
    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:
        body, status, detail = case
        started = time.perf_counter()
        resp = fuzz_client.post("/score", content=body)
        assert time.perf_counter() - started < 5.0, body[:80]
        assert resp.status_code == status, (body[:120], resp.text[:200])
        if detail is not None:
            assert detail in resp.json()["detail"], (body[:120], resp.text[:200])
        if status == 200:
            answers = resp.json()
            assert len(answers) == len(json.loads(body)) and all(
                "error" in a or 0 <= a["bot_score"] <= 1 for a in answers
            )
        seen[status] = seen.get(status, 0) + 1

    check()
    assert set(seen) == {200, 413, 422}, seen  # every kind of answer was exercised
