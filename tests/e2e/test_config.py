"""test_config.py — chatqd's configuration as a user meets it (docs/protocol.md §2):
runs on the defaults with no file, --check-config masks secrets and rejects
a bad file, --version answers."""

import json
import os
import subprocess

from conftest import API_KEY, BIN


def run_chatqd(cq, *args, env=None):
    e = dict(cq.env)
    e.update(env or {})
    return subprocess.run([os.path.join(BIN, "chatqd")] + list(args), capture_output=True,
                          text=True, env=e, timeout=20)


def test_runs_with_no_config_file(start_chatqd):
    cq = start_chatqd(config=False)
    assert "CHATQ_CONFIG" not in cq.env
    h = cq.run(cq.mkjob(stream=True))
    assert h["status"] == "succeeded" and h["provider"] == "default"


def test_check_config_masks_secrets(cq, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('// comments are allowed\n{"providers": [{"name": "p1", "base_url": "http://127.0.0.1:9/v1",'
                   ' "api_key_env": "OPENAI_API_KEY", "models": ["*"]}], "max_attempts": 4}\n')
    url = cq.redis_server.url.replace("redis://", "redis://user:pw-secret-789@")
    p = run_chatqd(cq, "--check-config", "--config", str(cfg), env={"CHATQ_REDIS_URL": url})
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert API_KEY not in out and "pw-secret-789" not in out
    assert "http://127.0.0.1:9/v1" in out and "p1" in out


def test_check_config_rejects_unknown_key(cq, tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"retry_bsae_ms": 10}))
    p = run_chatqd(cq, "--check-config", "--config", str(cfg))
    assert p.returncode == 1
    assert "retry_bsae_ms" in p.stdout + p.stderr


def test_version(cq):
    p = run_chatqd(cq, "--version")
    assert p.returncode == 0 and (p.stdout + p.stderr).strip()
