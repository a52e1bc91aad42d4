"""An agent class defined in a script (``__main__``) works under every start
method: its config carries the class by value."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import mabeam, otp

    class Scout(mabeam.Agent):
        def handle_request(self, message):
            return ("seen", message)

    with otp.Node(start_method="forkserver"):
        otp.trap_exit(True)
        app = mabeam.start()
        mabeam.register_agent(mabeam.AgentConfig("s1", Scout))
        mabeam.start_agent("s1", timeout=20)
        assert mabeam.request("s1", "x", timeout=10) == ("seen", "x")
        mabeam.stop_agent("s1")
        mabeam.stop(app)
    print("ok")
    """
)


def test_agent_class_defined_in_main_runs_under_forkserver(tmp_path):
    script = tmp_path / "scout.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
