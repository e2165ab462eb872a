"""How a fleet is configured (its environment, never its messages), and how it spreads a plan in time."""

from __future__ import annotations

from pathlib import Path

import flowengine as fe
import pytest

from flowengine_celery import FleetSettings, configuration, spread

STORE = "postgresql://fleet:s3cret-pw@db.example:5432/tokens?schema=fleet"


def test_settings_come_from_the_environment() -> None:
    settings = FleetSettings.from_env({
        "FLOWENGINE_STORE": STORE,
        "FLOWENGINE_CELERY_BROKER": "amqp://user:broker-pw@mq.example:5672/fleet",
        "FLOWENGINE_CELERY_SPECS": "podio, podio-app",
        "FLOWENGINE_CELERY_RATE_LIMIT": "250/h",
        "FLOWENGINE_CELERY_CLIENT_RATE_LIMIT": "5000/1h",
        "FLOWENGINE_CELERY_WINDOW": "3h",
        "FLOWENGINE_CELERY_EVERY": "10m",
    })  # fmt: skip
    assert settings.specs == ("podio", "podio-app")
    assert (settings.account_limit, settings.client_limit) == (
        fe.RateLimit(250, 3600),
        fe.RateLimit(5000, 3600),
    )
    assert (settings.window, settings.every, settings.limiter) == (10800, 600, STORE)
    shown = repr(settings)
    assert "s3cret-pw" not in shown and "broker-pw" not in shown, "no password in logs"
    assert "postgresql://db.example:5432/tokens" in shown and "amqp://mq.example:5672/fleet" in shown


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [
        ({}, "config_invalid", "FLOWENGINE_STORE"),
        ({"FLOWENGINE_STORE": "sqlite:///tokens.db"}, "store_not_shared", "sqlite://"),
        (
            {"FLOWENGINE_STORE": STORE, "FLOWENGINE_CELERY_LIMITER": "memory://"},
            "store_not_shared",
            "memory://",
        ),
        ({"FLOWENGINE_STORE": STORE, "FLOWENGINE_CELERY_RATE_LIMIT": "lots"}, "config_invalid", "RATE_LIMIT"),
        ({"FLOWENGINE_STORE": STORE, "FLOWENGINE_CELERY_WINDOW": "soon"}, "config_invalid", "WINDOW"),
        ({"FLOWENGINE_STORE": STORE, "FLOWENGINE_CELERY_RETRIES": "0"}, "config_invalid", "RETRIES"),
        ({"FLOWENGINE_STORE": STORE, "FLOWENGINE_CELERY_SPECS": " , "}, "config_invalid", "SPECS"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], code: str, says: str) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        FleetSettings.from_env(env)
    assert caught.value.code == code
    assert says in caught.value.message


def test_messages_are_json_acknowledged_late_and_a_dead_workers_are_handed_on() -> None:
    config = configuration(FleetSettings.from_env({"FLOWENGINE_STORE": STORE}))
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json", "never pickle"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    beat = config["beat_schedule"]["flowengine-keep-fresh"]
    assert (beat["task"], beat["schedule"]) == ("flowengine.keep_fresh", 900.0), (
        "every FLOWENGINE_CELERY_EVERY"
    )
    redis = configuration(FleetSettings.from_env({
        "FLOWENGINE_STORE": STORE, "FLOWENGINE_CELERY_BROKER": "redis://127.0.0.1:6379/0",
        "FLOWENGINE_CELERY_VISIBILITY_TIMEOUT": "90s", "FLOWENGINE_CELERY_BROKER_PREFIX": "mine:",
    }))  # fmt: skip
    options = redis["broker_transport_options"]
    assert (options["visibility_timeout"], options["global_keyprefix"]) == (90.0, "mine:")


def _orders(accounts: dict[str, int], client: str = "c") -> list[fe.RefreshOrder]:
    return [
        fe.RefreshOrder("podio", f"podio:{account}:{n}", f"sha256:{n}", account, client)
        for account, count in accounts.items()
        for n in range(count)
    ]


def _most_in_any_window(times: list[float], period: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + period) for start in times)


def test_the_spread_keeps_every_account_and_the_key_within_their_limits() -> None:
    orders = _orders({"app:1": 7, "app:2": 1, "app:3": 3, **{f"app:{n}": 1 for n in range(10, 60)}})
    account, client = fe.RateLimit(2, 1.0), fe.RateLimit(10, 1.0)
    scheduled = spread(orders, account, client)
    assert sorted(o.token_key for o, _ in scheduled) == sorted(o.token_key for o in orders)
    times = [due for _, due in scheduled]
    assert times == sorted(times) and times[0] == 0
    assert _most_in_any_window(times, client.period) <= client.calls
    for name in ("app:1", "app:3"):
        mine = [due for order, due in scheduled if order.account == name]
        assert _most_in_any_window(mine, account.period) <= account.calls
    first_round = [order.account for order, _ in scheduled][:10]
    assert len(set(first_round)) == 10, "each account's first token before any account's second"
    # The first round (53 accounts at 10 a second) ends 5 s in; app:1's last five tokens, at 2 a
    # second, come at 6 s and 7 s.
    assert max(times) == pytest.approx(7.0)


def test_without_limits_everything_is_due_at_once() -> None:
    assert {due for _, due in spread(_orders({"a": 3, "b": 2}), None, None)} == {0.0}


def test_batch_refresh_via_celery_refuses_a_store_the_workers_cannot_share(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from flowengine import get_plugin_manager
    from flowengine.cli import cli

    get_plugin_manager().hook.flowengine_commands(cli=cli)
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    done = CliRunner().invoke(cli, ["batch", "refresh", "--all", "--via", "celery", "--store", store])
    assert done.exit_code == 2, done.output
    assert "store_not_shared" in done.output
    reported = CliRunner().invoke(cli, ["batch", "refresh", "--all", "--via", "celery", "--report", "-"])
    assert reported.exit_code == 2
    assert "--via queues the refreshes" in reported.output
