"""Throttling (`crates/keystead-api/src/throttle.rs`): Key Vault's per-vault service limits,
answered 429 `Throttled` with `Retry-After`. Refused requests cost nothing, limits are per vault,
and the Azure SDK, which honours `Retry-After`, gets through by waiting."""
import time

import pytest

from keystead_helpers import Keystead, make_session, uniq


@pytest.fixture
def throttled(keystead_bin, tmp_path):
    # 2 secret creations and 4 other transactions per 10 s: one refill every 5 s and 2.5 s.
    ks = Keystead(keystead_bin, tmp_path, extra_args=["--throttle", "secret_create=2,other=4"])
    ks.start()
    yield ks
    ks.stop()


def assert_throttled(r, max_wait: int):
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "Throttled", r.text
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= max_wait, retry_after
    return retry_after


def test_over_a_limit_is_429_with_retry_after_per_vault_and_class(throttled):
    raw = throttled.raw("demo", keep_after_error=True)
    for i in range(2):
        raw.set_secret(f"t{i}", "v")
    assert_throttled(raw.put("/secrets/t2", json={"value": "v"}), 5)
    # Other transactions have their own bucket, and refusals take nothing from it.
    for _ in range(4):
        assert raw.get("/secrets/t0").status_code == 200
    for _ in range(5):
        assert_throttled(raw.get("/secrets/t0"), 3)
    time.sleep(2.6)
    assert raw.get("/secrets/t0").status_code == 200
    assert_throttled(raw.get("/secrets/t0"), 3)
    # Another vault is not affected.
    throttled.create_vault("calm")
    other = throttled.raw("calm", keep_after_error=True)
    other.set_secret("c", "v")
    assert other.get("/secrets/c").status_code == 200
    # The challenge round of an unauthenticated request is not counted, nor throttled.
    anonymous = throttled.raw("demo", token="", keep_after_error=True)
    assert anonymous.get("/secrets/t0").status_code == 401
    # What an operator sees: refusals by vault and class.
    metrics = make_session(throttled.ca).get(f"https://localhost:{throttled.port}/metrics", timeout=10).text
    assert 'keystead_throttled_requests_total{vault="demo",class="secret_create"} 1\n' in metrics, metrics
    assert 'keystead_throttled_requests_total{vault="demo",class="other"} 6\n' in metrics, metrics
    assert 'keystead_throttled_requests_total{vault="calm",class="other"} 0\n' in metrics, metrics


def test_the_sdk_waits_out_retry_after_and_succeeds(throttled):
    client = throttled.secret_client("demo")
    names = [uniq("sdk") for _ in range(3)]
    started = time.monotonic()
    for name in names:          # the third waits for a refill (5 s at 2 per 10 s)
        client.set_secret(name, "v")
    assert time.monotonic() - started >= 3.0, "the third creation was not held back"
    assert client.get_secret(names[2]).value == "v"
