"""bench_publish: build + publish of the node's outputs as message objects and as serialized CDR, through
a subscriber in another process (figures are printed, not asserted)."""
import json

import pytest

pytest.importorskip("rclpy")

from dpt_ros.tools import bench_publish  # noqa: E402

DOMAIN = 73


def test_bench_publish_times_both_formats_and_the_subscriber_receives_them(tmp_path, capsys):
    out = tmp_path / "publish.json"
    bench_publish.main(["--width", "64", "--height", "48", "--messages", "20", "--rate", "100",
                        "--domain", str(DOMAIN), "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["bytes"] == {"depth": 64 * 48 * 4, "points": 32 * 24 * 16}
    assert r["sent_per_output"] == 11 * 2 * 2      # warm-up round + 10 rounds, 2 messages per round, 2 formats
    for name in ("depth", "points"):
        assert 0 < r["received"][name] <= r["sent_per_output"]
        v = r[name]
        assert v["objects_ms"] > 0 and v["serialized_ms"] > 0
        # the ratio comes from the unrounded medians: allow exactly the rounding of the three figures
        o, ser, h = v["objects_ms"], v["serialized_ms"], 0.5e-4
        assert (ser - h) / (o + h) - 0.5e-3 <= v["ratio"] <= (ser + h) / (o - h) + 0.5e-3
    assert "ratio" in capsys.readouterr().out


@pytest.mark.parametrize("argv, why", [
    # (tracebacks: 'intrinsics need a positive image size; got 0x480', numpy's 'negative dimensions are not allowed')
    (["--width", "0"], "argument --width: 0 is no number of pixels: give at least 1"),
    (["--height", "-48"], "argument --height: -48 is no number of pixels: give at least 1"),
    # the node's points.stride range, by its own check
    (["--stride", "0"], "argument --stride: 0 out of range 1..64"),
    (["--stride", "65"], "argument --stride: 65 out of range 1..64"),
    # fewer than 10 were sent as 10 timed rounds of 1 (--messages 5: 'sent 22 per output', as --messages 10)
    (["--messages", "5"], "argument --messages: 5 is no number of messages: give at least 10 (they are sent in 10 "
                          "timed rounds of --messages // 10)"),
    (["--messages", "-300"], "argument --messages: -300 is no number of messages"),
    # 0 divided by zero (ZeroDivisionError), a negative or NaN one raised from time.sleep, each once the subscriber
    # process had started
    (["--rate", "0"], "argument --rate: 0 is no rate: give more than 0 Hz"),
    (["--rate", "-30"], "argument --rate: -30 is no rate: give more than 0 Hz"),
    (["--rate", "nan"], "argument --rate: nan is no rate"),
    (["--rate", "inf"], "argument --rate: inf is no rate"),
    (["--rate", "fast"], "argument --rate: 'fast' is not a number"),
])
def test_bench_publish_refuses_a_size_count_or_rate_it_cannot_use_before_it_starts(argv, why, usage_error,
                                                                                    monkeypatch):
    """Each is argparse's usage error (exit 2, naming the option and what to give) before the subscriber process or
    the probe node starts: run is never reached."""
    monkeypatch.setattr(bench_publish, "run", lambda args: pytest.fail(f"{argv} was taken and the run started"))
    usage_error(bench_publish.main, argv, why)
    args = bench_publish.parse_args(["--width", "1", "--height", "1", "--stride", "64", "--messages", "10",
                                     "--rate", "0.5"])
    assert (args.width, args.height, args.stride, args.messages, args.rate) == (1, 1, 64, 10, 0.5)
