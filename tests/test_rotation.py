"""A rotation in moto, read through the sidecar: stages are cached apart, a forced
refresh sees the move at once, and a plain read sees it within one TTL."""

from __future__ import annotations

import json
import time

from support import TOKEN, sidecar_env

from cachecore_server import TOKEN_HEADER

AUTH = {TOKEN_HEADER: TOKEN}
TTL = 2


def password(answer) -> str:
    assert answer.status == 200, answer.body
    return json.loads(answer.secret_string)["password"]


def credential(value: str) -> str:
    return json.dumps({"username": "app", "password": value})


def start_rotation(secretsmanager, name: str) -> tuple[str, str]:
    """Make a secret with AWSCURRENT 'old' and AWSPENDING 'new'; return both ids."""
    old = secretsmanager.create_secret(Name=name, SecretString=credential("old"))
    new = secretsmanager.put_secret_value(
        SecretId=name,
        SecretString=credential("new"),
        VersionStages=["AWSPENDING"],
    )
    return old["VersionId"], new["VersionId"]


def finish_rotation(secretsmanager, name: str) -> None:
    """Move AWSCURRENT to a version holding the new password.

    A real rotation moves the label with UpdateSecretVersionStage; moto (5.x) moves
    the label but keeps answering a GetSecretValue without a stage from the old
    version, so the test moves AWSCURRENT the other documented way: PutSecretValue
    with its default stage, which also labels the old version AWSPREVIOUS.
    """
    secretsmanager.put_secret_value(SecretId=name, SecretString=credential("new"))


def test_stages_and_version_ids_are_cached_apart_during_a_rotation(
    moto_url, secretsmanager, unique, start_sidecar
):
    name = unique("rotating")
    sidecar = start_sidecar(env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN))
    base = f"/secretsmanager/get?secretId={name}"
    old_id, new_id = start_rotation(secretsmanager, name)

    current = sidecar.get(base, headers=AUTH)
    pending = sidecar.get(base + "&versionStage=AWSPENDING", headers=AUTH)
    by_id = sidecar.get(base + f"&versionId={old_id}", headers=AUTH)
    legacy_pending = sidecar.get(
        f"/cache?name={name}&versionStage=AWSPENDING", headers=AUTH
    )

    assert password(current) == "old"
    assert password(pending) == "new"
    assert json.loads(pending.body)["VersionId"] == new_id
    assert password(by_id) == "old"
    assert json.loads(legacy_pending.body)["password"] == "new"


def test_forced_refresh_sees_the_finished_rotation_at_once(
    moto_url, secretsmanager, unique, start_sidecar
):
    name = unique("refreshed")
    sidecar = start_sidecar(env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN))
    base = f"/secretsmanager/get?secretId={name}"
    start_rotation(secretsmanager, name)
    assert password(sidecar.get(base, headers=AUTH)) == "old"

    finish_rotation(secretsmanager, name)
    cached = sidecar.get(base, headers=AUTH)
    refreshed = sidecar.get(base + "&refreshNow=true", headers=AUTH)
    previous = sidecar.get(base + "&versionStage=AWSPREVIOUS", headers=AUTH)

    assert (password(cached), cached.headers["x-cache"]) == ("old", "HIT")
    assert (password(refreshed), refreshed.headers["x-cache"]) == ("new", "MISS")
    assert password(previous) == "old"
    assert password(sidecar.get(base, headers=AUTH)) == "new"


def test_plain_read_sees_the_rotation_within_one_ttl(
    moto_url, secretsmanager, unique, start_sidecar
):
    name = unique("plain")
    sidecar = start_sidecar(
        env=sidecar_env(moto_url, CACHECORE_TOKEN=TOKEN, CACHECORE_TTL=str(TTL))
    )
    base = f"/secretsmanager/get?secretId={name}"
    start_rotation(secretsmanager, name)
    assert password(sidecar.get(base, headers=AUTH)) == "old"

    finish_rotation(secretsmanager, name)
    answers = [sidecar.get(base, headers=AUTH)]
    deadline = time.monotonic() + 30
    while password(answers[-1]) == "old":
        assert time.monotonic() < deadline, "the rotation was never seen"
        time.sleep(0.1)
        answers.append(sidecar.get(base, headers=AUTH))

    # Every answer that still held the old value came from the cache, younger than
    # the TTL; the new value came from a fetch.
    for answer in answers[:-1]:
        assert answer.headers["x-cache"] == "HIT"
        assert int(answer.headers["age"]) < TTL
    assert answers[-1].headers["x-cache"] == "MISS"
