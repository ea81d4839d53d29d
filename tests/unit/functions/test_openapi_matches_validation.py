"""The OpenAPI document's job request schema accepts exactly what validation accepts.

Property tests put generated values into one field of an otherwise valid request and compare
the document's verdict (jsonschema-rs, whose regexes follow ECMA-262 as JSON Schema asks, which
Python's `re` does not for `$`) with `validate_request`'s. Only what a JSON schema cannot say is
left out: the metadata byte budget (values here stay far below it), and whether a named model
is registered (checked at submission, not here).
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs  # schemathesis' own JSON Schema validator (a dependency of the dev extra)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidArgument
from core.job_request import METADATA_KEY_MAX_CHARS, WEBHOOK_PATTERN, validate_request
from core.settings import RequestLimits
from functions.http.openapi import openapi_document

LIMITS = RequestLimits()
BASE = {"prompt": "a lighthouse"}
EXAMPLES = settings(max_examples=300, deadline=None)


@pytest.fixture(scope="module")
def document_accepts() -> Any:
    schema = openapi_document(LIMITS)["components"]["schemas"]["JobRequest"]
    return jsonschema_rs.Draft202012Validator(schema).is_valid


def validation_accepts(body: dict[str, Any]) -> bool:
    try:
        validate_request(body, LIMITS)
    except InvalidArgument:
        return False
    return True


def agree(document_accepts: Any, body: dict[str, Any]) -> None:
    assert document_accepts(body) == validation_accepts(body), body


# Characters near the edges of the rules: whitespace as Python and ECMA-262 define it (the two
# sets differ), separators of URLs, non-ASCII and the underscore of reserved Firestore names.
EDGY = st.sampled_from(list("\t\n\v\f\r\x1c\x1f \x85\xa0\u1680\u2000\u2028\u202f\u3000\ufeff_:/@[]?#%.-aZ9é\x00"))
EDGY_TEXT = st.text(st.one_of(EDGY, st.characters(exclude_categories=("Cs",))), max_size=12)


@EXAMPLES
@given(
    st.one_of(
        st.from_regex(WEBHOOK_PATTERN, fullmatch=True),
        st.builds(lambda a, b: f"https://{a}{b}", EDGY_TEXT, EDGY_TEXT),
        st.builds(lambda a, b: f"{a}https://h{b}", EDGY_TEXT, EDGY_TEXT),
        EDGY_TEXT,
    )
)
def test_webhook(document_accepts: Any, url: str) -> None:
    agree(document_accepts, {**BASE, "webhook": url})


@EXAMPLES
@given(EDGY_TEXT)
def test_prompt(document_accepts: Any, prompt: str) -> None:
    agree(document_accepts, {**BASE, "prompt": prompt})


@EXAMPLES
@given(
    st.one_of(
        st.builds(
            lambda a, b, c: f"{a}{b}{c}",
            st.sampled_from(["", "_", "__", "___"]),
            EDGY_TEXT,
            st.sampled_from(["", "_", "__"]),
        ),
        st.text(max_size=METADATA_KEY_MAX_CHARS + 2).filter(lambda k: len(k) >= METADATA_KEY_MAX_CHARS - 2),
    )
)
def test_metadata_key(document_accepts: Any, key: str) -> None:
    agree(document_accepts, {**BASE, "metadata": {key: 1}})


@EXAMPLES
@given(
    st.sampled_from(["width", "height", "num_inference_steps", "num_images", "seed", "guidance_scale"]),
    st.one_of(
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(0, 1100).map(float),
        st.booleans(),
        st.none(),
    ),
)
def test_numbers(document_accepts: Any, field: str, value: Any) -> None:
    agree(document_accepts, {**BASE, field: value})
