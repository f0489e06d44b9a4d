"""No input makes a secret come out: redaction as values, and through `explain`."""

from __future__ import annotations

import json
import urllib.parse

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.cli.main import main_group
from entrypoint.plan.redact import MASK, is_secret_name, redact_text, secret_values

# Secrets carry a marker that nothing else in the texts contains, so that
# "the secret is absent" cannot be confused with a common substring.
SECRET = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")),
    min_size=1,
    max_size=20,
).map(lambda s: "Zq9" + s)
USER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=0, max_size=10)
SCHEMES = st.sampled_from(["redis", "rediss", "postgresql", "mysql", "amqp", "nats", "https"])


@given(scheme=SCHEMES, user=USER, password=SECRET)
def test_a_url_password_never_comes_out_encoded_or_raw(
    scheme: str, user: str, password: str
) -> None:
    for written in (urllib.parse.quote(password, safe=""), password):
        if any(c in written for c in "/?#") or written.strip() != written:
            continue  # a raw '/', '?', '#' or blank ends the authority: not a URL any more
        url = f"{scheme}://{user}:{written}@host.example:1234/db"
        out = redact_text(f"connecting to {url} failed")
        assert written not in out
        assert MASK in out
        assert "host.example:1234" in out


@given(name=st.sampled_from(["DB_PASSWORD", "API_TOKEN", "APP_KEY", "AWS_SECRET_ACCESS_KEY",
                             "MY_CREDENTIALS", "REDIS_PASSWORD"]), value=SECRET)  # fmt: skip
def test_secret_named_values_are_masked_and_listed(name: str, value: str) -> None:
    env = {name: value, "PWD": "/work/app", "HOME": "/root"}
    assert is_secret_name(name)
    assert value in secret_values(env)
    assert not is_secret_name("PWD")
    assert "/work/app" not in secret_values(env)
    assert redact_text(f"{name}={value}") == f"{name}={MASK}"


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(user=USER, password=SECRET, token=SECRET)
def test_explain_json_shows_no_secret(user: str, password: str, token: str) -> None:
    quoted = urllib.parse.quote(password, safe="")
    env = {
        "MODE": "worker",
        "QUEUE_URL": f"redis://{user}:{quoted}@redis:6379/0",
        "ENTRYPOINT_WAIT_FOR": f"https://{urllib.parse.quote(token, safe='')}@api.example/health",
        "REDIS_PASSWORD": password,
        "API_TOKEN": token,
        "ENTRYPOINT_LOG_FORMAT": "json",
    }
    result = CliRunner().invoke(
        main_group, ["explain", "--json", "--", "worker", f"--token={token}"], env=env
    )
    assert result.exit_code == 0, result.output
    for secret in (password, quoted, token):
        assert secret not in result.output
    plan = json.loads(result.output)
    assert plan["dependencies"][0]["url"].startswith("redis://")
