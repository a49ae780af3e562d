"""The command line asks OpenMP for passive waits before torch loads (idle threads sleep, not spin)."""

import os
import subprocess
import sys

PROBE = "import os, sys, asfda.cli.main; print(os.environ.get('OMP_WAIT_POLICY'))"
ORDER = "import sys, asfda.cli; print('torch' in sys.modules)"


def run(code: str, **environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_cli_sets_passive_waits_before_torch_is_imported():
    assert run(ORDER) == "False"  # the runtime reads the variable when it loads, with torch
    assert run(PROBE) == "PASSIVE"


def test_a_wait_policy_the_user_chose_is_kept():
    assert run(PROBE, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
