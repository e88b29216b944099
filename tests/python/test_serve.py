"""`keystead serve --config FILE`: the production entry point in single-node mode — listen
address, data dir, base domain and a KEK from an environment variable, TLS generated in the data
dir — administered with the CLI over the admin API, and restartable with the same data."""
import base64
import json
import os
import secrets
import subprocess
import time

from keystead_helpers import free_port, make_session


def test_serve_from_config_with_kek_from_env(keystead_bin, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    config = tmp_path / "keystead.toml"
    config.write_text(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\nbase_domain = "vault.localhost"\n'
                      f'[kek]\nenv = "TEST_KEK"\n')
    env = dict(os.environ, TEST_KEK=base64.b64encode(secrets.token_bytes(32)).decode())
    log = open(tmp_path / "serve.log", "wb")

    def start():
        return subprocess.Popen([keystead_bin, "serve", "--config", str(config)], stdout=log, stderr=log, env=env)

    def wait_healthy():
        session = make_session(str(data / "ca.pem"))
        for _ in range(200):
            try:
                if session.get(f"https://localhost:{port}/healthz", timeout=2).status_code == 200:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError((tmp_path / "serve.log").read_text())

    def cli(*args):
        out = subprocess.run([keystead_bin, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    proc = start()
    try:
        for _ in range(100):
            if (data / "ca.pem").exists():
                break
            time.sleep(0.1)
        wait_healthy()
        assert not (data / "kek.key").exists(), "the KEK came from the environment; nothing may be written"
        vault = cli("vault", "create", "prod", "--retention-days", "30")
        assert vault["retention_days"] == 30
        assert [v["name"] for v in cli("vault", "list")] == ["prod"]
        proc.terminate()
        proc.wait(timeout=15)
        # Without the KEK the data cannot be opened: the server refuses to start.
        bad = subprocess.run([keystead_bin, "serve", "--config", str(config)], capture_output=True, text=True,
                             timeout=30, env=dict(env, TEST_KEK=base64.b64encode(secrets.token_bytes(32)).decode()))
        assert bad.returncode != 0
        proc = start()
        wait_healthy()
        assert [v["name"] for v in cli("vault", "list")] == ["prod"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
