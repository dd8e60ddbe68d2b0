"""Pin the environment like Zeek's btest and tcpdump's TESTrun: UTC, C locale."""

from __future__ import annotations

import os
import time

os.environ["TZ"] = "UTC"
os.environ["LC_ALL"] = "C"
time.tzset()
