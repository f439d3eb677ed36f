"""bench_reliability: the report tool's exit code follows the test run it started (a real pytest run)."""
from dpt_ros.tools import bench_reliability


def test_run_returns_pytest_exit_code(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DPT_RELIABILITY_DIR", str(tmp_path))
    # a -k that selects nothing: pytest collects test/reliability, runs nothing and exits 5
    assert bench_reliability.main(["--run", "-k", "no_test_is_called_like_this"]) == 5
    assert "finished with exit code 5" in capsys.readouterr().out
    assert bench_reliability.main([]) == 0                            # table only


def test_k_without_run_is_a_usage_error(monkeypatch, tmp_path, usage_error):
    """`bench_reliability -k soak` ran no test and printed the last run's table, exit 0, as if -k had selected
    something: -k only narrows what --run runs."""
    monkeypatch.setenv("DPT_RELIABILITY_DIR", str(tmp_path))
    captured = usage_error(bench_reliability.main, ["-k", "soak"],
                           "error: -k selects the scenarios --run runs; give --run too (without it no test runs: the "
                           "table of the last run is printed)")
    assert captured.out == ""
