"""bench_reliability: the report tool's exit code follows the test run it started (a real pytest run)."""
from dpt_ros.tools import bench_reliability


def test_run_returns_pytest_exit_code(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DPT_RELIABILITY_DIR", str(tmp_path))
    # a -k that selects nothing: pytest collects test/reliability, runs nothing and exits 5
    assert bench_reliability.main(["--run", "-k", "no_test_is_called_like_this"]) == 5
    assert "finished with exit code 5" in capsys.readouterr().out
    assert bench_reliability.main([]) == 0                            # table only
