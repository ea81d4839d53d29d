import pytest

from core.settings import Environment, Settings, SettingsError


def test_test_env_defaults_to_memory_backends_and_local_names() -> None:
    settings = Settings.from_env({"GPUPIPE_ENV": "test"})
    assert settings.env is Environment.TEST
    assert settings.backend == "memory"
    assert settings.names.jobs_topic == "gpupipe-local-jobs"
    assert settings.names.jobs_subscription == "gpupipe-local-jobs-worker"
    assert settings.request_limits.default_size == 64


def test_local_env_uses_gcp_clients_pointed_at_emulators() -> None:
    settings = Settings.from_env({"GPUPIPE_ENV": "local", "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"})
    assert settings.backend == "gcp"
    assert settings.pubsub_emulator_host == "127.0.0.1:8085"
    assert settings.uses_emulators


def test_every_value_can_be_overridden_and_is_typed() -> None:
    settings = Settings.from_env(
        {
            "GPUPIPE_ENV": "test",
            "GPUPIPE_MAX_SIZE": "768",
            "GPUPIPE_WORKER_MAX_BATCH_SIZE": "8",
            "GPUPIPE_INBOX_BUCKET": "my-inbox",
        }
    )
    assert settings.request_limits.max_size == 768
    assert settings.worker.max_batch_size == 8
    assert settings.names.inbox_bucket == "my-inbox"


def test_prod_requires_project_and_pepper_naming_the_variables() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"GPUPIPE_ENV": "prod"})
    assert "GOOGLE_CLOUD_PROJECT" in str(err.value)
    assert "GPUPIPE_API_KEY_PEPPER" in str(err.value)


def test_prod_with_required_values() -> None:
    settings = Settings.from_env(
        {"GPUPIPE_ENV": "prod", "GOOGLE_CLOUD_PROJECT": "p", "GPUPIPE_API_KEY_PEPPER": "s3cret"}
    )
    assert settings.names.jobs_topic == "gpupipe-prod-jobs"
    assert settings.api_key_pepper.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_bad_values_are_named() -> None:
    with pytest.raises(SettingsError, match="GPUPIPE_ENV must be one of local, test, staging, prod, got 'dev'"):
        Settings.from_env({"GPUPIPE_ENV": "dev"})
    with pytest.raises(SettingsError, match="GPUPIPE_WORKER_MAX_BATCH_SIZE"):
        Settings.from_env({"GPUPIPE_ENV": "test", "GPUPIPE_WORKER_MAX_BATCH_SIZE": "many"})
