"""Workers pinned to CPUs: which CPU each worker gets, and the setting."""

from __future__ import annotations

import os
import threading

import pytest

from policy_sidecar.wiring.affinity import allowed_cpus, pin_current_thread, worker_cpus
from policy_sidecar.wiring.settings import Settings, SettingsError


def test_auto_gives_each_worker_its_own_cpu_when_the_cpus_match_the_workers() -> None:
    assert worker_cpus(2, "auto", [0, 1]) == [0, 1]
    assert worker_cpus(2, "auto", [3, 5]) == [3, 5]
    assert worker_cpus(1, "auto", [4]) == [4]


def test_auto_leaves_workers_unpinned_when_cpus_are_fewer_or_more() -> None:
    assert worker_cpus(3, "auto", [0, 1]) == [None, None, None]
    # A shared node: every sidecar would put its first worker on CPU 0.
    assert worker_cpus(1, "auto", [0, 1]) == [None]
    assert worker_cpus(2, "auto", list(range(16))) == [None, None]


def test_true_pins_in_turn_even_over_fewer_cpus() -> None:
    assert worker_cpus(3, "true", [0, 1]) == [0, 1, 0]


def test_false_or_unknown_cpus_never_pin() -> None:
    assert worker_cpus(2, "false", [0, 1]) == [None, None]
    assert worker_cpus(2, "true", []) == [None, None]


def test_no_workers_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        worker_cpus(0, "auto", [0])


def test_a_pinned_thread_passes_its_cpu_to_the_threads_it_starts() -> None:
    cpu = allowed_cpus()[-1]
    seen: dict[str, set[int]] = {}

    def child() -> None:
        seen["child"] = os.sched_getaffinity(0)

    def parent() -> None:
        pin_current_thread(cpu)
        seen["parent"] = os.sched_getaffinity(0)
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    assert seen == {"parent": {cpu}, "child": {cpu}}
    # The calling thread (this test's) is untouched.
    assert os.sched_getaffinity(0) == set(allowed_cpus())


def test_pin_none_changes_nothing() -> None:
    before = os.sched_getaffinity(0)
    pin_current_thread(None)
    assert os.sched_getaffinity(0) == before


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("AUTO", "auto"),
        ("true", "true"),
        ("1", "true"),
        ("on", "true"),
        ("false", "false"),
        ("0", "false"),
        ("off", "false"),
    ],
)
def test_setting(value: str | None, mode: str) -> None:
    env = {} if value is None else {"POLICY_SIDECAR_PIN_WORKERS": value}
    assert Settings.from_env(env).pin_workers == mode


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="POLICY_SIDECAR_PIN_WORKERS: expected auto"):
        Settings.from_env({"POLICY_SIDECAR_PIN_WORKERS": "sometimes"})
