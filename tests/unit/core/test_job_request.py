import pytest

from core.errors import InvalidArgument
from core.job_request import (
    MAX_SEED,
    METADATA_KEY_MAX_CHARS,
    NON_BLANK_PATTERN,
    WEBHOOK_PATTERN,
    request_json_schema,
    validate_request,
)
from core.settings import RequestLimits

LIMITS = RequestLimits(min_size=64, max_size=512, default_size=64, default_steps=20)


def fields_of(err: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {d.field: d.message for d in err.value.details}


def test_minimal_request_is_normalized_with_defaults_and_a_seed() -> None:
    request = validate_request({"prompt": "a red fox"}, LIMITS)
    assert request["width"] == request["height"] == 64
    assert request["num_inference_steps"] == 20
    assert request["num_images"] == 1
    assert request["output_format"] == "png"
    assert 0 <= request["seed"] <= MAX_SEED


def test_given_seed_is_kept() -> None:
    assert validate_request({"prompt": "x", "seed": 7}, LIMITS)["seed"] == 7


def test_every_bad_field_is_named_with_its_value() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request(
            {
                "prompt": "",
                "width": 500,
                "height": "64",
                "num_images": 9,
                "seed": -1,
                "webhook": "http://example.test/hook",
                "scheduler": "warp",
                "output_format": "gif",
                "colour": "blue",
            },
            LIMITS,
        )
    fields = fields_of(err)
    assert set(fields) == {
        "prompt",
        "width",
        "height",
        "num_images",
        "seed",
        "webhook",
        "scheduler",
        "output_format",
        "colour",
    }
    assert "multiple of 8" in fields["width"] and "500" in fields["width"]
    assert fields["colour"] == "is not a known field"
    assert "https" in fields["webhook"]


def test_missing_prompt_and_limits_from_settings() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"width": 1024}, LIMITS)
    fields = fields_of(err)
    assert fields["prompt"] == "is required"
    assert "512" in fields["width"]


def test_blank_prompt_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "   "}, LIMITS)
    assert "prompt" in fields_of(err)


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "num_images": True}, LIMITS)
    assert "num_images" in fields_of(err)


def test_metadata_size_is_bounded() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "metadata": {"k": "v" * 5000}}, LIMITS)
    assert "bytes" in fields_of(err)["metadata"]
    ok = validate_request({"prompt": "x", "metadata": {"order": 12, "tag": "a"}}, LIMITS)
    assert ok["metadata"] == {"order": 12, "tag": "a"}


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request(["prompt"], LIMITS)
    assert fields_of(err) == {"(body)": "expected an object, got list"}


def test_schema_reflects_the_limits() -> None:
    schema = request_json_schema(LIMITS)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]
    width = schema["properties"]["width"]
    assert (width["minimum"], width["maximum"], width["multipleOf"]) == (64, 512, 8)
    wider = request_json_schema(RequestLimits(max_size=1024))
    assert wider["properties"]["width"]["maximum"] == 1024


@pytest.mark.parametrize("key", ["", "__main__", "____", "__a b__", "__x\n__", "k" * 129])
def test_metadata_keys_firestore_cannot_store_are_rejected_naming_metadata(key: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "metadata": {"fine": 1, key: 2}}, LIMITS)
    fields = fields_of(err)
    assert list(fields) == ["metadata"]
    assert "1 to 128 characters" in fields["metadata"] and "__name__" in fields["metadata"]


@pytest.mark.parametrize("key", ["___", "__a", "a__", "_", "a.b", "`x`", "a/b", "k" * 128, "é", "str", "none"])
def test_metadata_keys_firestore_stores_as_they_are_are_kept(key: str) -> None:
    assert validate_request({"prompt": "x", "metadata": {key: 1}}, LIMITS)["metadata"] == {key: 1}


def test_a_bad_metadata_value_names_its_key_even_when_the_key_looks_like_a_type() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "metadata": {"str": [1], "int": {"a": 1}}}, LIMITS)
    assert set(fields_of(err)) == {"metadata.str", "metadata.int"}


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.test/gpupipe",
        "https://h",
        "https://user:pw@hooks.example.test:8443/a/b?c=d&e=%20#f",
        "https://[::1]:443/x",
        "https://10.0.0.1/x",
        "https://host_name.internal:65535",
    ],
)
def test_https_webhooks_are_accepted(url: str) -> None:
    assert validate_request({"prompt": "x", "webhook": url}, LIMITS)["webhook"] == url


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.test/x",
        "HTTPS://hooks.example.test/x",
        " https://hooks.example.test/x",
        "https://hooks.example.test/x\n",
        "https://hooks.example.test/a b",
        "https://",
        "https://:443/x",
        "https://user@",
        "https://h:65536/",
        "https://bücher.example/",
        "https://h/" + "x" * 2048,
    ],
)
def test_other_webhooks_are_rejected(url: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "webhook": url}, LIMITS)
    assert list(fields_of(err)) == ["webhook"]


@pytest.mark.parametrize("prompt", ["\u3000", "\x1c\x1f", "\u2028 \x85"])
def test_a_prompt_of_unicode_whitespace_is_blank(prompt: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": prompt}, LIMITS)
    assert "non-space" in fields_of(err)["prompt"]


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    request = validate_request({"prompt": "x", "width": 64.0, "seed": 7.0, "num_images": 2.0}, LIMITS)
    assert (request["width"], request["seed"], request["num_images"]) == (64, 7, 2)
    assert all(type(request[k]) is int for k in ("width", "seed", "num_images"))
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "width": 64.5, "height": "64", "num_images": True, "seed": 1e300}, LIMITS)
    assert set(fields_of(err)) == {"width", "height", "num_images", "seed"}


def test_schema_states_the_rules_validation_applies() -> None:
    properties = request_json_schema(LIMITS)["properties"]
    [webhook, _] = properties["webhook"]["anyOf"]
    assert webhook["pattern"] == WEBHOOK_PATTERN and webhook["maxLength"] == 2048
    assert properties["prompt"]["pattern"] == NON_BLANK_PATTERN
    [metadata, _] = properties["metadata"]["anyOf"]
    assert metadata["propertyNames"] == {
        "minLength": 1,
        "maxLength": METADATA_KEY_MAX_CHARS,
        "not": {"pattern": "^__[\\s\\S]*__$"},
    }
    bounded = properties["guidance_scale"]["anyOf"]
    assert [(b["minimum"], b["maximum"]) for b in bounded] == [(0, LIMITS.max_guidance_scale)] * 2
