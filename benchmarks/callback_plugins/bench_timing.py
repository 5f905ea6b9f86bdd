"""Record when each task started and ended on each host, for the benchmarks (not shipped).

Enabled by run.py with ANSIBLE_CALLBACK_PLUGINS=<this dir> and ANSIBLE_CALLBACKS_ENABLED=bench_timing;
writes one JSON line per task result to the file named by BENCH_TIMING_FILE. For results that carry
timing figures of their own (keys with "latency", "approved" or "observed" in their name, at the top
level or in the entries of a "certificates" list, csr_wait's "wait_stats" and user_certificates' per-cluster
"wait_stats") those figures are copied too.
"""

from __future__ import annotations

DOCUMENTATION = """
name: bench_timing
type: aggregate
short_description: per-task timings for the kubepki.certs benchmarks
description: Writes one JSON line per task result to the file named by BENCH_TIMING_FILE.
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

_MARKERS = ("latency", "approved", "observed", "issued_at", "elapsed")


def _timing_fields(mapping):
    return {k: v for k, v in mapping.items()
            if isinstance(k, str) and any(m in k for m in _MARKERS) and isinstance(v, (int, float, str))}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("BENCH_TIMING_FILE")
        self._started = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started[task._uuid] = time.time()

    def _record(self, result, status):
        if not self._path:
            return
        task = result.task
        data = result.result
        entry = {
            "host": result.host.get_name(), "task": task.get_name(), "action": task.action,
            "status": status, "start": self._started.get(task._uuid), "end": time.time(),
        }
        figures = _timing_fields(data)
        certificates = data.get("certificates")
        if isinstance(certificates, list):
            per_cert = [_timing_fields(c) for c in certificates if isinstance(c, dict)]
            if any(per_cert):
                figures["certificates"] = per_cert
        if isinstance(data.get("wait_stats"), dict):
            figures["wait_stats"] = data["wait_stats"]
        clusters = data.get("clusters")
        if isinstance(clusters, list):  # user_certificates: one wait per cluster
            waits = [c["wait_stats"] for c in clusters if isinstance(c, dict) and isinstance(c.get("wait_stats"), dict)]
            if waits:
                figures["cluster_wait_stats"] = waits
        if figures:
            entry["figures"] = figures
        with open(self._path, "a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")
