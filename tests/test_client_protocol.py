"""One suite, two readers: SecretsClient through a real cachecore-server, and the
in-process SecretCache, both on the same moto. Whatever one answers, so does the
other, so code written against SecretReader may switch by configuration."""

from __future__ import annotations

import json

import pytest
from client_support import aws_client, client_env, in_process, sidecar_client

import cachecore
from cachecore import SecretReader


@pytest.fixture(scope="module")
def sidecar(moto_url, start_module_sidecar):
    return start_module_sidecar(env=client_env(moto_url))


@pytest.fixture(scope="module")
def ssm(moto_url):
    client = aws_client("ssm", moto_url)
    yield client
    client.close()


@pytest.fixture(params=["sidecar", "in-process"])
def reader(request, moto_url):
    if request.param == "sidecar":
        made = sidecar_client(request.getfixturevalue("sidecar").port)
    else:
        made = in_process(moto_url)
    yield made
    made.close()


def test_both_readers_are_secret_readers(reader):
    assert isinstance(reader, SecretReader)


def test_a_string_secret_reads_as_text_json_and_bytes(reader, secretsmanager, unique):
    name = unique("db")
    document = {"username": "app", "password": "pässword"}
    secretsmanager.create_secret(Name=name, SecretString=json.dumps(document))

    assert reader.get_secret_string(name) == json.dumps(document)
    assert reader.get_secret_json(name) == document
    assert reader.get_secret_binary(name) == json.dumps(document).encode()


def test_each_json_read_is_a_new_object(reader, secretsmanager, unique):
    name = unique("json")
    secretsmanager.create_secret(Name=name, SecretString='{"a": [1]}')
    reader.get_secret_json(name)["a"].append(2)

    assert reader.get_secret_json(name) == {"a": [1]}


def test_a_binary_secret_reads_as_bytes_and_utf8_text(reader, secretsmanager, unique):
    raw, text = unique("raw"), unique("text")
    secretsmanager.create_secret(Name=raw, SecretBinary=bytes(range(256)))
    secretsmanager.create_secret(Name=text, SecretBinary="ünï".encode())

    assert reader.get_secret_binary(raw) == bytes(range(256))
    assert reader.get_secret_string(text) == "ünï"
    with pytest.raises(ValueError, match="not UTF-8"):
        reader.get_secret_string(raw)


def test_stages_and_version_ids_pick_versions(reader, secretsmanager, unique):
    name = unique("versions")
    first = secretsmanager.create_secret(Name=name, SecretString="one")
    secretsmanager.put_secret_value(SecretId=name, SecretString="two")

    assert reader.get_secret_string(name) == "two"
    assert reader.get_secret_string(name, version_stage="AWSCURRENT") == "two"
    assert reader.get_secret_string(name, version_stage="AWSPREVIOUS") == "one"
    assert reader.get_secret_string(name, version_id=first["VersionId"]) == "one"


def test_a_refresh_sees_a_change_that_the_cache_does_not(
    reader, secretsmanager, unique
):
    name = unique("changing")

    def change(n: int) -> None:
        secretsmanager.put_secret_value(SecretId=name, SecretString=f'{{"v": {n}}}')

    secretsmanager.create_secret(Name=name, SecretString='{"v": 0}')
    assert reader.get_secret_json(name) == {"v": 0}
    change(1)

    assert reader.get_secret_json(name) == {"v": 0}  # cached for its TTL
    assert reader.get_secret_json(name, refresh=True) == {"v": 1}
    change(2)
    assert reader.get_secret_string(name, refresh=True) == '{"v": 2}'
    change(3)
    assert reader.get_secret_binary(name, refresh=True) == b'{"v": 3}'
    assert reader.get_secret_string(name) == '{"v": 3}'


@pytest.mark.parametrize("tail", ["a+b", "a=b@c", "/leading", "x.y_z-w", "sp ace"])
def test_names_reach_secrets_manager_exactly_as_given(
    reader, secretsmanager, unique, tail
):
    name = unique(tail)
    secretsmanager.create_secret(Name=name, SecretString=f"value of {tail}")

    assert reader.get_secret_string(name) == f"value of {tail}"


def test_a_missing_secret_or_stage_is_secret_not_found(reader, unique, secretsmanager):
    name = unique("present")
    secretsmanager.create_secret(Name=name, SecretString="x")

    with pytest.raises(cachecore.SecretNotFoundError):
        reader.get_secret_string(unique("absent"))
    with pytest.raises(cachecore.SecretNotFoundError):
        reader.get_secret_json(name, version_stage="NOSUCHSTAGE")
    with pytest.raises(cachecore.SecretNotFoundError):
        reader.get_secret_binary(name, version_id="0" * 32)


def test_parameters_by_version_label_and_decryption(reader, ssm, unique):
    name = "/" + unique("param")
    hidden = "/" + unique("hidden")
    ssm.put_parameter(Name=name, Type="String", Value="v1")
    ssm.put_parameter(Name=name, Type="String", Value="v2", Overwrite=True)
    ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["prod"])
    ssm.put_parameter(Name=hidden, Type="SecureString", Value="plain-text")

    assert reader.get_parameter(name) == "v2"
    assert reader.get_parameter(name, version=1) == "v1"
    assert reader.get_parameter(name, label="prod") == "v1"
    assert reader.get_parameter(hidden, with_decryption=True) == "plain-text"
    assert reader.get_parameter(hidden) != "plain-text"


def test_a_missing_parameter_is_secret_not_found(reader, unique):
    with pytest.raises(cachecore.SecretNotFoundError):
        reader.get_parameter("/" + unique("no-such-parameter"))
