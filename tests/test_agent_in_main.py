"""Classes and functions defined in a script (``__main__``) work under the
forkserver start method, whose processes do not share the script's
``__main__``: in messages, in child specs, as agent classes."""

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

    class Point:
        def __init__(self, x):
            self.x = x

    def echo():
        sender, msg = otp.receive(10)
        otp.send(sender, msg)

    with otp.Node(start_method="forkserver"):
        otp.trap_exit(True)
        # A message holding an instance of a __main__ class, there and back.
        pid = otp.spawn(echo)
        otp.send(pid, (otp.self(), Point(3)))
        back = otp.receive(10)
        assert isinstance(back, Point) and back.x == 3, back
        # A child spec naming a __main__ function, sent to a supervisor.
        sup = otp.DynamicSupervisor.start_link()
        assert otp.supervisor.start_child(sup, otp.child_spec("e", start=(otp.spawn_link, (echo,))), timeout=10)
        app = mabeam.start()
        mabeam.register_agent(mabeam.AgentConfig("s1", Scout))
        mabeam.start_agent("s1", timeout=20)
        assert mabeam.request("s1", "x", timeout=10) == ("seen", "x")
        mabeam.stop_agent("s1")
        mabeam.stop(app)
    print("ok")
    """
)


def test_main_classes_and_functions_travel_by_value_under_forkserver(tmp_path):
    script = tmp_path / "scout.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
