"""test_chaos_short.py — the short versions of the issue-9 chaos scenarios
(tests/chaos/storm.py --short), so that `make test` runs them:
  - A: a random worker SIGKILLed every 2 s and Redis restarted twice while
    400 paced 1-s jobs run: nothing lost or doubled, no job dead-lettered,
    chatqd alive, wall time within 2x of the same run without kills;
  - B: one poison pill among 500 jobs: dead-lettered after exactly three
    crashes, the rest succeed at no less than half the unharmed throughput.
Each runs storm.py in its own redis-server and upstream; its report is
printed when it fails. The full sizes run in `make chaos`."""

import os
import subprocess
import sys


from conftest import BIN, REPO, SCALE

STORM = os.path.join(REPO, "tests", "chaos", "storm.py")


def run_storm(scenario):
    env = dict(os.environ, CHATQ_BIN=BIN)
    r = subprocess.run(["/usr/bin/python3", STORM, "--short", scenario], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=150 * SCALE)
    report = "\n".join(l for l in r.stdout.splitlines() if not l.startswith("ts="))
    assert r.returncode == 0, "storm.py --short %s exited %d:\n%s" % (scenario, r.returncode,
                                                                       report[-6000:])
    sys.stdout.write(report)


def test_storm_a_kills_and_redis_restarts():
    run_storm("A")


def test_storm_b_one_poison_pill():
    run_storm("B")
