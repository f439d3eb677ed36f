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
