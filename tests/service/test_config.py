"""Settings come from flags or SPARSEGATE_* environment variables, checked at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEGATE_MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("SPARSEGATE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("SPARSEGATE_BATCHING", "false")
    monkeypatch.setenv("SPARSEGATE_API_KEY", "s3cret-key")
    monkeypatch.setenv("SPARSEGATE_CORS_ORIGINS", '["https://a.example"]')
    settings = Settings()
    assert settings.model_repository == tmp_path
    assert (settings.max_batch_size, settings.batching) == (7, False)
    assert settings.api_key.get_secret_value() == "s3cret-key"
    assert "s3cret-key" not in repr(settings)
    assert settings.cors_origins == ["https://a.example"]
    assert Settings(max_batch_size=3).max_batch_size == 3  # a flag wins over the environment


@pytest.mark.parametrize("field, value", [("max_batch_size", 0), ("port", 70000),
                                          ("device", "tpu"), ("max_batch_delay_ms", -1),
                                          ("unknown_setting", 1)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_a_batch_larger_than_a_forward_is_refused_naming_both_settings():
    with pytest.raises(ValueError, match=r"max_batch_size \(512\) is above max_forward_examples"):
        Settings(max_batch_size=512)
    assert Settings(max_batch_size=512, max_forward_examples=512).max_forward_examples == 512
    assert Settings(max_batch_size=512, batching=False).max_batch_size == 512  # unused
