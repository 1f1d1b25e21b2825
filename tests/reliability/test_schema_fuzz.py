"""Schemathesis against the app's own OpenAPI spec, for every operation: as the owner of a key, with no key,
and with another user's key. No 5xx, every response matches its documented status code, content type and
schema, invalid input is refused, and nothing of one user is readable with another's key.

Cases come from ``operation.as_strategy()`` (valid and invalid data) driven by our own parametrized tests:
schemathesis' pytest plugin does not run on pytest 9.2 (it writes the removed ``Node._nodeid``).
"""

import time

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.routes import api_router
from engine.config import Settings
from engine.service import ImageEngine
from tests.api.helpers import set_plan, set_workspace
from tests.conftest import make_user

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
FUZZ = hypothesis_settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
MARKER = "owner-only-zebra-marker"  # in the owner's prompts: must never show up in another user's responses


def bare_openapi() -> dict:
    """The documented API, known at collection time from the routers alone."""
    bare = FastAPI()
    bare.include_router(api_router)
    return bare.openapi()


def documented_operations() -> list[tuple[str, str]]:
    return sorted((method.upper(), path) for path, ops in bare_openapi()["paths"].items() for method in ops)


def queried_paths() -> list[str]:
    """GET paths that take query parameters, or an image id (which takes a signed link's pair)."""
    return sorted(path for path, ops in bare_openapi()["paths"].items() if "get" in ops and (
        "{image_id}" in path or any(p.get("in") == "query" for p in ops["get"].get("parameters", []))))


OPERATIONS = documented_operations()
ROOMY = dict(slug="fuzz", requests_per_minute=100_000, requests_per_day=100_000, requests_per_month=100_000,
             max_concurrent_jobs=100, storage_enabled=True, storage_quota_mb=100)


@pytest.fixture(scope="module")
def world(tmp_path_factory, models_dir):
    """One server for the whole module: two users on a roomy plan; the owner has a stored image and a job."""
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("fuzz"), models_path=models_dir,
                         default_model="tiny-sd", device="cpu", studio_enabled=False, allow_downloads=False,
                         secret_key="fuzz-secret")
    engine = ImageEngine(settings)
    app = create_app(engine=engine, with_studio=False)
    owner, owner_key = make_user(engine, "owner@example.com")
    intruder, intruder_key = make_user(engine, "intruder@example.com")
    for user in (owner, intruder):
        set_plan(engine, user, **ROOMY)
        set_workspace(engine, user, credits=10_000_000)
    owner_auth = {"Authorization": f"Bearer {owner_key}"}
    with TestClient(app) as client:
        body = {"prompt": MARKER, "width": 256, "height": 256}
        image = client.post("/api/v1/generate", json=body, headers=owner_auth).json()["data"]
        job = client.post("/api/v1/generate", json=body | {"async": True}, headers=owner_auth).json()["data"]
        while client.get(f"/api/v1/jobs/{job['job_id']}", headers=owner_auth).json()["data"]["status"] in (
                "queued", "running"):
            time.sleep(0.05)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield {"schema": schema, "app": app, "engine": engine, "owner": owner_auth,
               "intruder": {"Authorization": f"Bearer {intruder_key}"},
               "owned": {"image_id": image["id"], "job_id": job["job_id"]}, "owner_key": owner_key}


def cases(operation, **fixed):
    return st.one_of(operation.as_strategy(GenerationMode.POSITIVE, **fixed),
                     operation.as_strategy(GenerationMode.NEGATIVE, **fixed))


GENERATING = {"/api/v1/generate", "/api/v1/generate/product", "/api/v1/generate/logo", "/api/v1/image-studio"}


def steer_generation(case, data) -> None:
    """Valid generation requests run for real. Random model names and missing prompts would stop nearly all
    of them at validation, so half are steered to a tiny model and given a prompt; all are kept at the
    smallest size and 2 steps so the fuzzing stays fast."""
    if case.path not in GENERATING or not isinstance(case.body, dict) or case.meta.generation.mode.is_negative:
        return
    body = case.body
    if data.draw(st.booleans(), label="runnable"):
        body["model"] = data.draw(st.sampled_from([None, "tiny-sd", "tiny-sdxl", "tiny-flux"]), label="model")
        if body.get("items") is None and not body.get("prompt"):
            body["prompt"] = "a fuzzed lighthouse"
        if body.get("action") == "edit" or "input_image" in body:  # input images have tests of their own
            body.pop("input_image", None)
            body["action"] = "generate"
    for target in [body] + [item for item in body.get("items") or [] if isinstance(item, dict)]:
        for key in ("width", "height"):
            if isinstance(target.get(key), int) and target[key] > 256:
                target[key] = 256
        if isinstance(target.get("steps"), int) and target["steps"] > 2:
            target["steps"] = 2
        if "aspect_ratio" in target:
            target["aspect_ratio"] = "1:1"


def without_auth(case) -> None:
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_with_a_valid_key(world, method, path):
    operation = world["schema"][path][method]

    @given(case=cases(operation), data=st.data())
    @FUZZ
    def run(case, data):
        steer_generation(case, data)
        # A case made invalid in its headers (no or a bad Authorization) goes as generated: expect a refusal.
        headers = None if case.meta.is_negative_at(ParameterLocation.HEADER) else world["owner"]
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_without_a_key(world, method, path):
    operation = world["schema"][path][method]
    secured = bool(operation.definition.raw.get("security"))

    @given(case=cases(operation), data=st.data())
    @FUZZ
    def run(case, data):
        without_auth(case)
        steer_generation(case, data)
        response = case.call_and_validate(checks=CHECKS)
        signed_link = bool({"expires", "signature"} & set(case.query or {}))  # an image's own kind of auth
        if secured and not signed_link:
            # The body is read before auth runs: unreadable JSON is refused as such, and nothing else is.
            unreadable = response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
            assert response.status_code == 401 or unreadable, response.text

    run()


READING = [(method, path) for method, path in OPERATIONS if method in ("GET", "DELETE")]


@pytest.mark.parametrize("method,path", READING, ids=[f"{m} {p}" for m, p in READING])
def test_fuzz_with_another_users_key(world, method, path):
    """The intruder aims every id at the owner's image and job: always 404, never a byte of the owner's."""
    operation = world["schema"][path][method]
    owned = {name: value for name, value in world["owned"].items() if "{" + name + "}" in path}

    @given(case=cases(operation, path_parameters=owned or None))
    @FUZZ
    def run(case):
        headers = None if case.meta.is_negative_at(ParameterLocation.HEADER) else world["intruder"]
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        assert MARKER.encode() not in response.content and world["owner_key"][8:16].encode() not in response.content
        if owned and case.path_parameters == owned:
            assert response.status_code in (401, 404, 422), response.text

    run()
    # Nothing was deleted or cancelled by the intruder: the owner still has both.
    client = TestClient(world["app"])  # no `with`: the app's lifespan (engine start/stop) is not run again
    image = client.get(f"/api/v1/images/{world['owned']['image_id']}", headers=world["owner"])
    job = client.get(f"/api/v1/jobs/{world['owned']['job_id']}", headers=world["owner"])
    assert image.status_code == 200 and MARKER.encode() in image.content
    assert job.status_code == 200 and job.json()["data"]["status"] == "succeeded"


HOSTILE_TEXT = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
            min_size=1, max_size=40),  # non-ASCII, up to the astral planes
    st.text(min_size=1, max_size=40).map(lambda s: "=\u00e3\u00f2\u00ba" + s),
    st.sampled_from(["\x00", "%00", "../../etc/passwd", "' OR 1=1 --", "\u202e", "\ufeff", "NaN", "-0", "1e309"]),
)
EXTREME_NUMBERS = st.one_of(st.integers(min_value=-(2**80), max_value=2**80), st.sampled_from(
    [2**31, 2**31 - 1, 2**63, 2**63 - 1, -(2**63), 2**64, 10**30, 2124614731909])).map(str)


def query_parameters(world, method: str, path: str) -> list[str]:
    raw = world["schema"][path][method].definition.raw
    return [p["name"] for p in raw.get("parameters", []) if p.get("in") == "query"]


def path_with_ids(world, path: str) -> str:
    """The path with the owner's own ids in it (an image's signed link, a job), else a plain id."""
    for name, value in world["owned"].items():
        path = path.replace("{" + name + "}", value)
    return path.replace("{slug}", "tiny-sd").replace("{image_id}", "0").replace("{job_id}", "0")


@pytest.mark.parametrize("path", queried_paths())
def test_fuzz_hostile_query_values(world, path):
    """Non-ASCII text and extreme numbers in every query parameter (and the signed-link pair on image paths),
    as no key, the owner and the intruder: never a 5xx."""
    names = query_parameters(world, "GET", path)
    value = st.one_of(HOSTILE_TEXT, EXTREME_NUMBERS)
    required = {}
    if "{image_id}" in path:  # the signed-link pair, both given, so the signature check really runs
        required = {"expires": st.one_of(EXTREME_NUMBERS, st.integers(2**31, 2**62).map(str)),
                    "signature": st.one_of(HOSTILE_TEXT, st.text(max_size=80))}
    optional = {name: value for name in names if name not in required}
    client = TestClient(world["app"], raise_server_exceptions=False)  # a crash is a 500 here, as for a client
    identities = [{}, world["owner"], world["intruder"]]

    @given(values=st.fixed_dictionaries(required, optional=optional),
           identity=st.sampled_from(range(len(identities))), owned=st.booleans())
    @FUZZ
    def run(values, identity, owned):
        target = path_with_ids(world, path) if owned else path_with_ids({"owned": {}}, path)
        response = client.get(target, params=values, headers=identities[identity])
        assert response.status_code < 500, (target, values, response.text)
        if response.status_code >= 400:
            assert response.json()["request_id"] == response.headers["x-request-id"]

    run()
