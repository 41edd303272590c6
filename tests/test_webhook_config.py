"""Webhook settings: https endpoints (http only to loopback), a secret of 32 bytes or
more, and a server that refuses to start without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError
from signalling.config import from_env
from signalling.webhook_config import WebhookSettings, webhooks_from_env
from tests.servers import run_cli

SECRET = "x" * 32


def test_no_urls_means_no_webhooks() -> None:
    assert webhooks_from_env({}) == WebhookSettings()
    assert from_env({}).webhooks.urls == ()


def test_urls_secret_and_timing_are_read() -> None:
    settings = webhooks_from_env(
        {
            "VISITROOM_WEBHOOK_URLS": "https://ehr.example/hooks, http://127.0.0.1:9000/h,"
            "https://ehr.example/hooks",
            "VISITROOM_WEBHOOK_SECRET": SECRET,
            "VISITROOM_WEBHOOK_TIMEOUT_S": "3",
            "VISITROOM_WEBHOOK_RETRY_BASE_S": "0.1",
            "VISITROOM_WEBHOOK_RETRY_MAX_S": "2m",
            "VISITROOM_WEBHOOK_GIVE_UP_S": "2h",
        }
    )
    assert settings == WebhookSettings(
        ("https://ehr.example/hooks", "http://127.0.0.1:9000/h"), SECRET, 3.0, 0.1, 120.0, 7200.0
    )
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"VISITROOM_WEBHOOK_URLS": "https://e.example/h", "VISITROOM_WEBHOOK_SECRET": ""},
         "at least 32 bytes"),
        ({"VISITROOM_WEBHOOK_URLS": "https://e.example/h", "VISITROOM_WEBHOOK_SECRET": "short"},
         "at least 32 bytes"),
        ({"VISITROOM_WEBHOOK_URLS": "http://ehr.example/h"}, "needs https"),
        ({"VISITROOM_WEBHOOK_URLS": "ftp://ehr.example/h"}, "not an http"),
        ({"VISITROOM_WEBHOOK_URLS": "ehr.example"}, "not an http"),
        ({"VISITROOM_WEBHOOK_URLS": "https://u:p@ehr.example/h"}, "no credentials"),
        ({"VISITROOM_WEBHOOK_URLS": "https://e.example/h", "VISITROOM_WEBHOOK_TIMEOUT_S": "0"},
         "must be positive"),
        ({"VISITROOM_WEBHOOK_RETRY_BASE_S": "10", "VISITROOM_WEBHOOK_RETRY_MAX_S": "5"},
         "RETRY_MAX_S"),
    ],
)  # fmt: skip
def test_bad_webhook_settings_are_refused_with_the_reason(env: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        webhooks_from_env({"VISITROOM_WEBHOOK_SECRET": SECRET, **env})


def test_the_server_refuses_to_start_with_a_short_webhook_secret(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "VISITROOM_WEBHOOK_URLS": "https://ehr.example/hooks",
        "VISITROOM_WEBHOOK_SECRET": "too-short",
    }
    done = run_cli("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), env=env)
    assert done.returncode == 2
    assert "VISITROOM_WEBHOOK_SECRET of at least 32 bytes" in done.stderr
    assert "too-short" not in done.stderr + done.stdout
