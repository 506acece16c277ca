# Copyright: voicefleet
# Apache-2.0 (see README.md)
"""Callback: wall time and controller CPU per play and per role, written as JSON."""

from __future__ import annotations

DOCUMENTATION = r"""
name: phase_times
type: aggregate
short_description: Wall time and controller CPU per play and role, as JSON
description:
  - Splits a playbook run into phases, one per role (or per play for a play's own tasks) in
    each play, a serial batch being a play of its own, and records for each the wall time (from
    the start of its first task to the start of the next phase, as
    C(ansible.posix.profile_roles) counts it), the controller CPU spent meanwhile, its tasks
    and the hosts' results (ok, changed, failed, skipped, unreachable).
  - Controller CPU is read from a cpuacct cgroup when O(cpuacct_cgroup) names one the run is
    in (every process of the run counted, the SSH ControlPersist masters that leave the
    process tree included), else from this process and its reaped children (C(os.times)).
  - Writes the JSON to O(output) when the run ends; prints nothing.
  - Used by C(bench/scale.py) (docs/scale.md); enable it for any run with
    C(ANSIBLE_CALLBACKS_ENABLED=voicefleet.fleet.phase_times).
requirements:
  - Enabled with C(callbacks_enabled) / C(ANSIBLE_CALLBACKS_ENABLED)
options:
  output:
    description: Path of the JSON file written at the end of the run.
    type: path
    default: phase_times.json
    env:
      - name: VOICEFLEET_PHASE_TIMES_JSON
  cpuacct_cgroup:
    description:
      - A cgroup v1 cpuacct directory (with C(cpuacct.usage)) that holds this run's processes.
      - Empty means this process and its reaped children.
    type: path
    default: ""
    env:
      - name: VOICEFLEET_PHASE_TIMES_CPUACCT
author: voicefleet (@voicefleet)
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

RESULTS = ("ok", "changed", "failed", "skipped", "unreachable")


class CallbackModule(CallbackBase):
    """Phases of a run: (play, role) in the order they ran."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "voicefleet.fleet.phase_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._plays = []
        self._phase = None
        self._t0 = None
        self._cpu0 = None

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._cgroup = self.get_option("cpuacct_cgroup")
        self._t0, self._cpu0 = time.monotonic(), self._cpu()

    def _cpu(self):
        """Controller CPU seconds so far."""
        if self._cgroup:
            with open(os.path.join(self._cgroup, "cpuacct.usage"), encoding="ascii") as fh:
                return int(fh.read()) / 1e9
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def _close(self):
        if self._phase is not None:
            now, cpu = time.monotonic(), self._cpu()
            self._phase["wall_s"] += now - self._phase.pop("_start")
            self._phase["cpu_s"] += cpu - self._phase.pop("_cpu")
            self._phase = None

    def _enter(self, role):
        play = self._plays[-1]
        if self._phase is not None and self._phase["role"] == role:
            return
        self._close()
        found = [p for p in play["phases"] if p["role"] == role]
        if found:  # a role entered again in the same play (handlers, a later import)
            self._phase = found[0]
        else:
            self._phase = {"role": role, "wall_s": 0.0, "cpu_s": 0.0, "tasks": 0,
                           **{r: 0 for r in RESULTS}}  # fmt: skip
            play["phases"].append(self._phase)
        self._phase["_start"], self._phase["_cpu"] = time.monotonic(), self._cpu()

    def v2_playbook_on_play_start(self, play):
        self._close()
        self._plays.append({"play": play.get_name().strip(), "hosts": [], "phases": []})

    def _task_start(self, task):
        role = task._role.get_name(include_role_fqcn=False) if task._role else "(play)"
        self._enter(role)
        self._phase["tasks"] += 1

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task)

    def _result(self, result, kind):
        if self._phase is None:
            return
        if kind == "ok" and result._result.get("changed"):
            kind = "changed"
        self._phase[kind] += 1
        hosts = self._plays[-1]["hosts"]
        if result._host.get_name() not in hosts:
            hosts.append(result._host.get_name())

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close()
        for play in self._plays:
            play["wall_s"] = round(sum(p["wall_s"] for p in play["phases"]), 3)
            play["cpu_s"] = round(sum(p["cpu_s"] for p in play["phases"]), 3)
            for p in play["phases"]:
                p["wall_s"], p["cpu_s"] = round(p["wall_s"], 3), round(p["cpu_s"], 3)
        report = {
            "wall_s": round(time.monotonic() - self._t0, 3),
            "cpu_s": round(self._cpu() - self._cpu0, 3),
            "cpu_source": "cpuacct cgroup" if self._cgroup else "process and reaped children",
            "plays": self._plays,
        }
        with open(self.get_option("output"), "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
            fh.write("\n")
