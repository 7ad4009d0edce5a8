#!/usr/bin/env python3
"""Harness self-check only: stands in for `veil run` using `tansu proxy`.

Accepts Veil's command line (`run --config FILE --listen HOST:PORT --upstream HOST:PORT`)
and execs `tansu proxy`, which forwards to the broker and advertises its own
address in metadata. Use it as VEIL_BIN to exercise the interop suite's veil
route before Veil exists. It is not Veil and proves nothing about Veil.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from conftest import tansu_binary  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("command", choices=["run"])
ap.add_argument("--config")
ap.add_argument("--listen", required=True)
ap.add_argument("--upstream", required=True)
a = ap.parse_args()
binary = tansu_binary()
os.execv(binary, [binary, "proxy", "--listener-url", f"tcp://{a.listen}",
                  "--advertised-listener-url", f"tcp://{a.listen}", "--origin-url", f"tcp://{a.upstream}"])
