"""Self-test of labkit's process, port and waiting helpers (no project binary needed):

    python3 -m unittest discover -s scripts/labkit -t scripts
"""

from __future__ import annotations

import socket
import sys
import time
import unittest

from labkit import metrics, services
from labkit.base import SetupError
from labkit.ports import closed_port
from labkit.procs import Supervisor
from labkit.waiting import wait_until

PY = sys.executable


class Procs(unittest.TestCase):
    def test_line_wait_fires_on_a_silent_child(self):
        with Supervisor() as sup:
            child = sup.start("silent", [PY, "-c", "import time; time.sleep(30)"])
            t0 = time.monotonic()
            with self.assertRaises(SetupError):
                child.wait_for_line("never", 0.5)
            self.assertLess(time.monotonic() - t0, 2.0)

    def test_line_wait_sees_an_unterminated_last_line_and_an_exit(self):
        with Supervisor() as sup:
            child = sup.start("short", [PY, "-c", "import sys; sys.stdout.write('ready at 42'); sys.exit(3)"])
            self.assertEqual(child.wait_for_line(r"ready at (\d+)", 5).group(1), "42")
            child = sup.start("dies", [PY, "-c", "import sys; sys.exit(4)"])
            with self.assertRaisesRegex(SetupError, "exited with code 4"):
                child.wait_for_line("never", 5)

    def test_stop_reports_exit_codes_and_kills_what_ignores_sigterm(self):
        with Supervisor(grace=0.5) as sup:
            stubborn = sup.start("stubborn", [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                                        "signal.SIG_IGN); print('up', flush=True); time.sleep(30)"])
            stubborn.wait_for_line("up", 5)
            sup.start("polite", [PY, "-c", "import time; time.sleep(30)"])
            codes = dict(sup.stop_all())
        self.assertEqual(codes, {"stubborn": -9, "polite": -15})


class Ports(unittest.TestCase):
    def test_closed_port_refuses(self):
        with closed_port() as held:
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", held.getsockname()[1]), timeout=2).close()

    def test_picked_port_taken_is_retried(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        calls = []

        def argv(ports):
            calls.append(ports[0])
            port = taken.getsockname()[1] if len(calls) == 1 else ports[0]  # the first attempt loses the race
            calls[-1] = port
            return [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]

        def ready(child, _ports):
            services.wait_http(child, f"http://127.0.0.1:{calls[-1]}/", timeout=10)

        with Supervisor() as sup, taken:
            child, _ = services.start_on_picked_ports(sup, "web", argv, ready)
            self.assertTrue(child.alive())
        self.assertEqual(len(calls), 2)


class Waiting(unittest.TestCase):
    def test_wait_until(self):
        t0 = time.monotonic()
        self.assertIsNone(wait_until(lambda: False, 0.2))
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        self.assertIsNotNone(wait_until(lambda: time.monotonic() - t0 > 0.3, 2))


class Metrics(unittest.TestCase):
    def test_metric_sum(self):
        text = ('# TYPE r counter\nr{route="a",status="200"} 2\nr{route="a",status="500"} 1\n'
                'r{route="b",status="200"} 4\ng 7\n')
        self.assertEqual(metrics.metric_sum(text, "r"), 7)
        self.assertEqual(metrics.metric_sum(text, "r", {"route": "a"}), 3)
        self.assertEqual(metrics.metric_sum(text, "g"), 7)
        self.assertIsNone(metrics.metric_sum(text, "r", {"route": "c"}))


if __name__ == "__main__":
    unittest.main()
