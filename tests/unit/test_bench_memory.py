"""The memory scenario's pure parts (benchmarks/memory.py): reading VmRSS, finding a
process's children, the growth from the warm-up mark, and the printed report."""

import os
import signal
import subprocess
import sys
import time

import pytest

from hutch.benchmarks.memory import Sampler, Series, children_of, report, rss_kib, vm_rss_kib

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  412340 kB
VmRSS:\t   90412 kB
RssAnon:\t   60000 kB
Threads:\t4
"""


def test_vm_rss_is_read_in_kib_from_a_status_text():
    assert vm_rss_kib(STATUS) == 90412


def test_a_status_without_vm_rss_is_refused():
    with pytest.raises(ValueError, match="no VmRSS"):
        vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n")


def test_a_forked_child_is_sampled_and_a_helper_with_its_own_command_is_not():
    """Pool children are forked (same command line); a process started with a command of
    its own (multiprocessing's resource tracker, a short-lived command) is no worker."""
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    forked = os.fork()
    if forked == 0:  # the child: as a prefork pool child, this process's command line
        time.sleep(30)
        os._exit(0)
    try:
        assert children_of(os.getpid()) == [forked]
        assert rss_kib(forked) > 0
        sampler = Sampler(os.getpid())
        sampler.sample(0)
        sampler.sample(10)
        labels = {series.label: series for series in sampler.series.values()}
        assert set(labels) == {"worker", "child 1"}
        assert [done for done, _ in labels["worker"].samples] == [0, 10]
    finally:
        for pid in (helper.pid, forked):
            os.kill(pid, signal.SIGKILL)
        helper.wait()
        os.waitpid(forked, 0)


def test_growth_runs_from_the_warm_mark_to_the_last_sample():
    series = Series("worker", [(0, 800), (10_000, 950), (20_000, 1000), (30_000, 1010),
                               (40_000, 1050)])
    kib, fraction = series.growth(20_000)
    assert kib == 50 and fraction == pytest.approx(0.05)


def test_growth_is_none_for_a_process_not_running_across_the_warm_mark():
    assert Series("child 3", [(0, 800), (10_000, 900)]).growth(20_000) is None
    assert Series("child 3", [(20_000, 800)]).growth(20_000) is None
    assert Series("child 3", [(30_000, 800), (40_000, 900)]).growth(20_000) is None


def test_a_child_not_there_throughout_is_reported_without_figures():
    said: list[str] = []
    figures = report("prefork -c 2", [
        Series("worker", [(0, 1024), (20_000, 2048), (100_000, 2048)]),
        Series("child 1", [(0, 1024), (20_000, 2048), (100_000, 2150)]),
        Series("child 2", [(0, 1024)]),
    ], 61.4, said.append)
    assert said[0] == ("memory, worker -P prefork -c 2 (100,000 tasks in 61 s): RSS in MiB at "
                       "0/20k/100k tasks; growth from 20k to the end")
    assert said[1].split() == ["worker", "1.0", "2.0", "2.0", "+0", "KiB", "(+0.0%)"]
    assert said[2].endswith("+102 KiB (+5.0%)")
    assert said[3].endswith("(not there throughout)")
    assert figures == {"memory_prefork_worker_growth_kib": 0.0,
                       "memory_prefork_worker_growth_pct": 0.0,
                       "memory_prefork_child1_growth_kib": 102.0,
                       "memory_prefork_child1_growth_pct": pytest.approx(102 / 2048 * 100)}
