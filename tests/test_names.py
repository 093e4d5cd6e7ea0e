"""Secret names reach Secrets Manager exactly as sent, in query form and path form.

A property test makes secrets in moto under generated names from Secrets Manager's
character set (letters, digits and ``/_+=.@-``), then reads each back through every
route form, byte for byte. Fixed cases add what AWS names may not hold but callers
may still send (``!``, ``%``, spaces) and what must never move to another route
(dot segments).
"""

from __future__ import annotations

import itertools
import json
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import GRANIAN, TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}
ALLOWED = string.ascii_letters + string.digits + "/_+=.@-"
SERVERS = ["gunicorn", "waitress", GRANIAN]


@pytest.fixture(scope="module", params=SERVERS)
def sidecar(request, moto_url, start_module_sidecar):
    env = sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN)
    return start_module_sidecar(server=request.param, env=env)


def read_every_way(sidecar, name: str) -> dict[str, tuple[int, str | None]]:
    """(status, the Name or the raw body) from each route form for ``name``."""
    encoded = quote(name, safe="")
    answers = {
        "query, encoded": sidecar.get(
            f"/secretsmanager/get?secretId={encoded}", headers=AUTH
        ),
        "path, encoded": sidecar.get(f"/v1/{quote(name, safe='/')}", headers=AUTH),
        "legacy, encoded": sidecar.get(f"/cache?name={encoded}", headers=AUTH),
    }
    if all(c in ALLOWED for c in name):
        # How the legacy PHP client sends it: inserted without any encoding.
        answers["legacy, raw"] = sidecar.get(f"/cache?name={name}", headers=AUTH)
        answers["path, raw"] = sidecar.get(f"/v1/{name}", headers=AUTH)
    return {
        form: (
            answer.status,
            json.loads(answer.body)["Name"]
            if answer.status == 200 and not form.startswith("legacy")
            else answer.text,
        )
        for form, answer in answers.items()
    }


counter = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    stem=st.text(alphabet=ALLOWED, min_size=1, max_size=40),
    value=st.text(min_size=1, max_size=200).filter(
        lambda v: not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    ),
)
def test_generated_names_read_back_byte_for_byte(sidecar, secretsmanager, stem, value):
    name = f"{stem}-{next(counter)}"
    secretsmanager.create_secret(Name=name, SecretString=value)

    answers = read_every_way(sidecar, name)

    for form, (status, seen) in answers.items():
        assert status == 200, (form, name, seen)
        if form.startswith("legacy"):
            assert seen == value, form
        else:
            assert seen == name, form


@pytest.mark.parametrize(
    "name",
    [
        "with space",
        "100%-sure",
        "bang!",
        "/leading/slash",
        "a/../b",
        "./dot",
        "trailing/",
        "plus+and=equals@at",
        "caf\u00e9",
    ],
)
def test_names_outside_the_aws_set_still_arrive_exactly(sidecar, secretsmanager, name):
    n = next(counter)
    unique = f"{n}-{name}" if name.endswith("/") else f"{name}-{n}"
    secretsmanager.create_secret(Name=unique, SecretString=f"value of {unique}")

    answers = read_every_way(sidecar, unique)

    for form, (status, seen) in answers.items():
        assert status == 200, (form, unique, seen)
        assert seen in (unique, f"value of {unique}"), form


def test_full_arn_is_read_in_both_forms(sidecar, secretsmanager):
    name = f"by-arn-{next(counter)}"
    arn = secretsmanager.create_secret(Name=name, SecretString="via arn")["ARN"]

    query = sidecar.get(f"/secretsmanager/get?secretId={arn}", headers=AUTH)
    path = sidecar.get(f"/v1/{arn}", headers=AUTH)

    assert json.loads(query.body)["Name"] == name
    assert json.loads(path.body)["Name"] == name


def test_dot_segments_never_reach_another_route(sidecar):
    answer = sidecar.get("/v1/../cache?name=anything", headers=AUTH)
    legacy = sidecar.get("/secretsmanager/../cache?name=anything", headers=AUTH)

    assert answer.status == 400  # /v1 took it: "name" is not one of its parameters
    assert legacy.status == 404
    assert json.loads(legacy.body)["__type"] == "UnknownOperationException"
