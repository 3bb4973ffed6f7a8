"""The providers file: the shipped one, expansion of base URLs, API keys, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardstream.config.catalog import load_catalog
from guardstream.config.providers import check_against_catalog, load_providers
from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError

SETTINGS = Settings()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    return path


def one_model(deployment: str = "", route: str = "", model: str = "m") -> str:
    return (
        f"version: 1\nmodels:\n  {model}:\n{route}    deployments:\n"
        f"      - name: d1\n        base_url: http://h/v1\n{deployment}"
    )


def test_shipped_file_covers_the_catalog_with_two_simulator_deployments_each() -> None:
    providers = load_providers(SETTINGS.providers_file, environ={})
    catalog = load_catalog(SETTINGS.model_catalog)
    check_against_catalog(providers, catalog, SETTINGS.providers_file)
    assert set(providers.models) == set(catalog.models)
    for model, route in providers.models.items():
        assert [d.name for d in route.deployments] == [f"{model}-primary", f"{model}-secondary"]
        assert route.deployments[0].base_url == f"http://127.0.0.1:8700/d/{model}-primary/v1"
        assert all(d.api_key is None for d in route.deployments)


def test_simulator_port_is_overridable() -> None:
    providers = load_providers(
        SETTINGS.providers_file, environ={"GUARDSTREAM_PROVIDER_SIM_PORT": "9999"}
    )
    assert providers.models["gpt-4o"].deployments[1].base_url.startswith("http://127.0.0.1:9999/")


def test_api_key_is_read_from_the_named_variable(tmp_path: Path) -> None:
    path = write(tmp_path, one_model("        api_key_env: MY_KEY\n"))
    providers = load_providers(path, environ={"MY_KEY": "sk-1"})
    key = providers.models["m"].deployments[0].api_key
    assert key is not None and key.get_secret_value() == "sk-1"
    assert "sk-1" not in repr(providers)


def test_missing_api_key_variable_is_one_line_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, one_model("        api_key_env: MY_KEY\n"))
    with pytest.raises(GuardstreamError) as info:
        load_providers(path, environ={})
    assert info.value.cause == (
        f"{path}: models.m.deployments.0.api_key_env: environment variable MY_KEY is not set"
    )
    assert "export MY_KEY" in info.value.fix


def test_unset_variable_in_a_base_url_without_default_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, one_model().replace("http://h/v1", "http://${HOST_X}/v1"))
    with pytest.raises(GuardstreamError, match="HOST_X is not set"):
        load_providers(path, environ={})
    assert load_providers(path, environ={"HOST_X": "a"}).models["m"].deployments[0].base_url == (
        "http://a/v1"
    )


@pytest.mark.parametrize(
    ("deployment", "route", "where"),
    [
        ("        timeout_s: 0\n", "", "models.m.deployments.0.timeout_s"),
        ("        max_concurrent: 1.5\n", "", "models.m.deployments.0.max_concurrent"),
        ("        colour: red\n", "", "models.m.deployments.0.colour"),
        ("", "    retry: {base_backoff_s: 2, max_backoff_s: 1}\n", "models.m.retry"),
        ("", "    context_fallback: nowhere\n", "models"),
    ],
)
def test_invalid_entries_name_the_file_and_field(
    tmp_path: Path, deployment: str, route: str, where: str
) -> None:
    path = write(tmp_path, one_model(deployment, route))
    with pytest.raises(GuardstreamError) as info:
        load_providers(path, environ={})
    assert info.value.cause.startswith(f"{path}: {where}: ")


def test_deployment_names_are_unique_across_models(tmp_path: Path) -> None:
    text = one_model() + one_model(model="n").split("models:\n", 1)[1]
    with pytest.raises(GuardstreamError, match="'d1' is used twice"):
        load_providers(write(tmp_path, text), environ={})


def test_context_fallback_loop_and_smaller_window_are_refused(tmp_path: Path) -> None:
    loop = one_model(route="    context_fallback: n\n") + one_model(
        route="    context_fallback: m\n", model="n"
    ).split("models:\n", 1)[1].replace("d1", "d2")
    with pytest.raises(GuardstreamError, match="loops: m -> n -> m"):
        load_providers(write(tmp_path, loop), environ={})

    catalog = load_catalog(SETTINGS.model_catalog)
    path = write(tmp_path, one_model(route="    context_fallback: n\n", model="gpt-4o"))
    path.write_text(
        path.read_text().replace("context_fallback: n", "context_fallback: llama-3-70b")
        + one_model(model="llama-3-70b").split("models:\n", 1)[1].replace("d1", "d2")
    )
    with pytest.raises(GuardstreamError, match="no larger context window"):
        check_against_catalog(load_providers(path, environ={}), catalog, path)


def test_unknown_model_is_refused_against_the_catalog(tmp_path: Path) -> None:
    path = write(tmp_path, one_model(model="not-in-catalog"))
    with pytest.raises(GuardstreamError, match="not a model of the catalog"):
        check_against_catalog(
            load_providers(path, environ={}), load_catalog(SETTINGS.model_catalog), path
        )
