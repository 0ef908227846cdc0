"""test_systemd.py — the systemd unit, `make install`, the shipped config and
the man pages (issue 3, item 6).

- `make install DESTDIR=... PREFIX=/usr` through the top-level Makefile
  (which includes mk/install.mk) puts every file where it belongs, rewrites
  the unit's paths, and never overwrites an existing chatq.json;
  `make uninstall` removes what it installed and keeps an edited config.
  Make is run with -o for the three programs, so that it installs exactly the
  binaries under test ($CHATQ_BIN) and never rebuilds them.
- With systemd-analyze on PATH (skipped otherwise): `systemd-analyze verify`
  is clean on the installed unit, its ExecStart pointing at the real
  $CHATQ_BIN/chatqd (verify checks that the binary exists) and MANPATH at the
  installed man pages (verify checks Documentation=man: pages too); and
  `systemd-analyze security --offline=yes` rates both the repository's
  systemd/chatqd.service and the installed unit at an exposure of 1.0 or less.
- The shipped etc/chatq.json passes `chatqd --check-config` with the key
  where the unit's LoadCredential= puts it, without printing the key, and
  its api_key_file names the unit's credential; the chatq client, which
  never has that key, works with it too.
- The man pages render without groff warnings (skipped without groff) and
  name every command, flag and key the programs themselves report."""

import filecmp
import json
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import BIN, REPO

UNIT_SRC = os.path.join(REPO, "systemd", "chatqd.service")
CONF_SRC = os.path.join(REPO, "etc", "chatq.json")
PROGS = ("chatqd", "chatq-worker", "chatq")
MAN_PAGES = (("man1", "chatq.1"), ("man5", "chatq.json.5"), ("man8", "chatqd.8"))
EXPOSURE_MAX = 1.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def make(destdir, goal="install", **variables):
    """Runs the top-level Makefile's `goal` into destdir; returns its output."""
    args = ["make", "-C", REPO, "--no-print-directory", "BUILD=" + BIN, "DESTDIR=" + str(destdir)]
    for prog in PROGS:
        args += ["-o", os.path.join(BIN, prog)]
    args += ["%s=%s" % kv for kv in sorted(variables.items())]
    args.append(goal)
    # Not the flags and variables of a make this test may run under
    # (`make e2e`, `make asan`), nor install paths from the environment.
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BUILD", "PREFIX", "DESTDIR",
            "BINDIR", "SYSCONFDIR", "MANDIR", "UNITDIR", "INSTALL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, "make %s failed:\n%s" % (goal, r.stdout)
    return r.stdout


def read_unit(path):
    """The unit's settings, all sections together; the values of a repeated
    key are joined by newlines. (The unit uses no line continuations.)"""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            key, _, value = line.partition("=")
            out[key] = value if key not in out else out[key] + "\n" + value
    return out


def check_config(config, env_extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHATQ_", "OPENAI_")) and k != "CREDENTIALS_DIRECTORY"}
    env.update(env_extra)
    return subprocess.run([os.path.join(BIN, "chatqd"), "--check-config", "--config", config],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          timeout=30)


# ---------------------------------------------------------------- make install

def test_top_level_makefile_includes_install_rules():
    with open(os.path.join(REPO, "Makefile")) as f:
        text = f.read()
    assert re.search(r"^-?include\s+mk/install\.mk\s*$", text, re.M), \
        "the top-level Makefile must `include mk/install.mk` for `make install`"


def test_install_puts_every_file_in_place(tmp_path):
    out = make(tmp_path, PREFIX="/usr")
    for prog in PROGS:
        path = tmp_path / "usr" / "bin" / prog
        assert filecmp.cmp(path, os.path.join(BIN, prog), shallow=False), prog
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, prog
    unit = tmp_path / "usr" / "lib" / "systemd" / "system" / "chatqd.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    settings = read_unit(unit)
    assert settings["ExecStart"] == "/usr/bin/chatqd --config /etc/chatq/chatq.json"
    assert settings["ExecPaths"].split()[:2] == ["/usr/bin/chatqd", "/usr/bin/chatq-worker"]
    assert settings["LoadCredential"] == "openai-api-key:/etc/chatq/openai-api-key"
    assert "/usr/local" not in settings["ExecStart"]
    for section, page in MAN_PAGES:
        path = tmp_path / "usr" / "share" / "man" / section / page
        assert path.stat().st_size > 1000, page
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, page
    # the installed chatqd.8 names the unit where it was installed
    with open(tmp_path / "usr" / "share" / "man" / "man8" / "chatqd.8") as f:
        assert "/usr/lib/systemd/system/chatqd.service" in f.read()
    conf = tmp_path / "etc" / "chatq" / "chatq.json"
    assert filecmp.cmp(conf, CONF_SRC, shallow=False)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644  # the dynamic user reads it
    assert "installing " + str(conf) in out
    # nothing lands outside DESTDIR's usr/ and etc/, and no key file is made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc", "usr"]
    assert sorted(p.name for p in (tmp_path / "etc" / "chatq").iterdir()) == ["chatq.json"]


def test_install_paths_follow_the_variables(tmp_path):
    make(tmp_path, PREFIX="/opt/cq", SYSCONFDIR="/opt/cq/etc", UNITDIR="/lib/systemd/system")
    assert (tmp_path / "opt" / "cq" / "bin" / "chatqd").is_file()
    assert (tmp_path / "opt" / "cq" / "share" / "man" / "man5" / "chatq.json.5").is_file()
    settings = read_unit(tmp_path / "lib" / "systemd" / "system" / "chatqd.service")
    assert settings["ExecStart"] == "/opt/cq/bin/chatqd --config /opt/cq/etc/chatq/chatq.json"
    assert settings["LoadCredential"] == "openai-api-key:/opt/cq/etc/chatq/openai-api-key"
    with open(tmp_path / "opt" / "cq" / "etc" / "chatq" / "chatq.json") as f:
        conf = f.read()
    assert "/opt/cq/etc/chatq/openai-api-key" in conf
    assert re.search(r"(?<!/opt/cq)/etc/chatq", conf) is None


def test_install_never_overwrites_an_existing_config(tmp_path):
    conf = tmp_path / "etc" / "chatq" / "chatq.json"
    conf.parent.mkdir(parents=True)
    mine = '{"queues": ["operator-edited"]}\n'
    conf.write_text(mine)
    conf.chmod(0o640)
    out = make(tmp_path, PREFIX="/usr")
    assert conf.read_text() == mine
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert "keeping the existing " + str(conf) in out
    # installing again over a full installation changes nothing either
    make(tmp_path, PREFIX="/usr")
    assert conf.read_text() == mine

    out = make(tmp_path, "uninstall", PREFIX="/usr")
    assert conf.read_text() == mine, "uninstall removed an edited config"
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["etc/chatq/chatq.json"]


def test_uninstall_removes_an_unedited_config(tmp_path):
    make(tmp_path, PREFIX="/usr")
    make(tmp_path, "uninstall", PREFIX="/usr")
    left = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert left == []
    assert not (tmp_path / "etc" / "chatq").exists()


# ---------------------------------------------------------------- the unit

def test_unit_settings():
    s = read_unit(UNIT_SRC)
    assert s["Type"] == "notify"
    assert s["NotifyAccess"] == "main"
    assert s["ExecStart"].startswith("/usr/local/bin/chatqd ")
    assert s["ExecReload"].split() == ["/bin/kill", "-HUP", "$MAINPID"]
    assert s["KillMode"] == "mixed"
    assert s["Restart"] == "on-failure"
    assert int(s["WatchdogSec"]) > 0
    assert s["DynamicUser"] == "yes"
    # outbound TCP and unix sockets must stay possible
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "PrivateNetwork" not in s
    # NoExecPaths=/ applies to every Exec*= command, ExecReload='s kill too:
    # each must be allowed by ExecPaths=, as must the worker chatqd spawns.
    assert s["NoExecPaths"] == "/"
    allowed = [p.lstrip("-") for p in s["ExecPaths"].split()]
    programs = [s[k].split()[0] for k in ("ExecStart", "ExecReload")]
    programs.append("/usr/local/bin/chatq-worker")
    for prog in programs:
        assert any(prog == a or prog.startswith(a.rstrip("/") + "/") for a in allowed), prog
    # the stop timeout leaves room for the default grace period
    r = check_config("/dev/null", {})
    assert r.returncode == 0, r.stderr
    grace_ms = json.loads(r.stdout)["shutdown_grace_ms"]
    assert int(s["TimeoutStopSec"]) * 1000 > grace_ms + 5000


def install_for_verify(tmp_path):
    """Installs with BINDIR = $CHATQ_BIN, so ExecStart names a real binary."""
    make(tmp_path, PREFIX="/usr", BINDIR=BIN)
    unit = tmp_path / "usr" / "lib" / "systemd" / "system" / "chatqd.service"
    assert read_unit(unit)["ExecStart"].split()[0] == os.path.join(BIN, "chatqd")
    return unit


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    unit = install_for_verify(tmp_path)
    env = dict(os.environ)
    args = ["systemd-analyze", "verify"]
    if shutil.which("man"):
        env["MANPATH"] = str(tmp_path / "usr" / "share" / "man")
    else:
        args.append("--man=no")
    r = subprocess.run(args + [str(unit)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env, timeout=60)
    about_unit = [l for l in r.stdout.splitlines() if "chatqd" in l]
    assert r.returncode == 0 and about_unit == [], r.stdout


def exposure(unit):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    m = re.search(r"Overall exposure level for chatqd\.service: (\d+\.\d+)", r.stdout)
    assert r.returncode == 0 and m, r.stdout
    return float(m.group(1)), r.stdout


@needs_analyze
def test_exposure_of_the_repository_unit():
    level, report = exposure(UNIT_SRC)
    assert level <= EXPOSURE_MAX, report


@needs_analyze
def test_exposure_of_the_installed_unit(tmp_path):
    level, report = exposure(install_for_verify(tmp_path))
    assert level <= EXPOSURE_MAX, report


@needs_analyze
def test_exposure_figure_is_read_from_the_report(tmp_path):
    # The parse above must not pass by accident: an unhardened unit of the
    # same name scores far worse (systemd rates a bare service 9.6).
    bare = tmp_path / "chatqd.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    level, report = exposure(bare)
    assert level > 5.0, report


# ---------------------------------------------------------------- the config

def test_shipped_config_passes_check_config_with_the_credential(tmp_path):
    unit = read_unit(UNIT_SRC)
    cred_id, cred_path = unit["LoadCredential"].split(":", 1)
    assert cred_path == "/etc/chatq/" + cred_id
    creds = tmp_path / "credentials"
    creds.mkdir()
    secret = "sk-shipped-config-SECRET-7d1f"
    (creds / cred_id).write_text(secret + "\n")
    r = check_config(CONF_SRC, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    dump = json.loads(r.stdout)
    keyed = [p for p in dump["providers"] if p["api_key_file"]]
    assert [p["api_key_file"] for p in keyed] == [cred_id]
    assert keyed[0]["api_key"] == "***"
    grace_ms = dump["shutdown_grace_ms"]
    assert int(unit["TimeoutStopSec"]) * 1000 > grace_ms


def test_shipped_config_without_the_credential_names_the_missing_file(tmp_path):
    empty = tmp_path / "credentials"
    empty.mkdir()
    r = check_config(CONF_SRC, {"CREDENTIALS_DIRECTORY": str(empty)})
    assert r.returncode == 1
    assert str(empty / "openai-api-key") in r.stderr


def test_shipped_config_serves_the_client_without_the_key(redis_server, tmp_path):
    # chatq reads the same /etc/chatq/chatq.json but never has the service's
    # credential: it must work all the same (it needs no API key).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHATQ_", "OPENAI_")) and k != "CREDENTIALS_DIRECTORY"}
    r = subprocess.run([os.path.join(BIN, "chatq"), "--config", CONF_SRC, "--redis",
                        redis_server.url, "--prefix", "systemd-test", "stats", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       cwd=str(tmp_path), timeout=30)
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)


# ---------------------------------------------------------------- man pages

def man_text(page):
    with open(os.path.join(REPO, "man", page)) as f:
        return f.read()


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", [p for _, p in MAN_PAGES])
def test_man_page_renders_without_warnings(page):
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(REPO, "man", page)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_chatq_1_documents_every_command():
    r = subprocess.run([os.path.join(BIN, "chatq"), "--help"], stdout=subprocess.PIPE, text=True,
                       timeout=30)
    listing = r.stdout.split("Commands:")[1].split("\n\n")[0]
    commands = re.findall(r"^  (\w+) ", listing, re.M)
    assert len(commands) >= 6
    text = man_text("chatq.1")
    for cmd in commands:
        assert ".SS %s\n" % cmd in text, cmd


def test_chatqd_8_documents_every_flag():
    flags = set()
    for prog in ("chatqd", "chatq-worker"):
        r = subprocess.run([os.path.join(BIN, prog), "--help"], stdout=subprocess.PIPE,
                           text=True, timeout=30)
        flags |= set(re.findall(r"--([a-z][a-z-]+)", r.stdout))
    assert {"config", "workers", "check-config", "id"} <= flags
    text = man_text("chatqd.8").replace("\\-", "-")
    for flag in flags:
        assert re.search(r"^\.(B|BI|BR) --%s\b" % flag, text, re.M), flag


def test_chatq_json_5_documents_every_key(tmp_path):
    conf = tmp_path / "one.json"
    conf.write_text(json.dumps({"providers": [{"name": "p", "base_url": "http://x"}]}))
    r = check_config(str(conf), {})
    assert r.returncode == 0, r.stderr
    dump = json.loads(r.stdout)
    keys = set(dump) - {"file"}
    provider_keys = set(dump["providers"][0]) - {"api_key"}  # api_key: the resolved secret
    assert {"redis_url", "shutdown_grace_ms", "providers"} <= keys
    assert {"api_key_file", "models", "headers"} <= provider_keys
    text = man_text("chatq.json.5")
    for key in keys | provider_keys:
        # each key is the subject of a tagged paragraph: .BR key " (type)"
        assert re.search(r"^\.BR .*(?<![\w-])%s(?![\w-])" % re.escape(key), text, re.M), key
