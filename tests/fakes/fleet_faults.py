"""A pytest plugin (``-p tests.fakes.fleet_faults``) that plants one fault on one fleet node.

``FAKE_FLEET_<node>`` (the Slurm node name) says what that node's task does: ``kill`` (SIGKILL
itself), ``hang`` (sleep past any limit), or ``env:NAME=VALUE`` (a node-local environment, e.g. a
data root that points somewhere broken). Read at import, before preflight resolves its options.
"""

import os
import signal
import time

_action = os.environ.get(f"FAKE_FLEET_{os.environ.get('SLURMD_NODENAME', '')}", "")
if _action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
elif _action == "hang":
    while True:
        time.sleep(60)
elif _action.startswith("env:"):
    name, _, value = _action[4:].partition("=")
    os.environ[name] = value
