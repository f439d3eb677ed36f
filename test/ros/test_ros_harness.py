"""The test harness (dpt_ros.ros.testing.Harness) keeps spinning after an exception out of its executor: the
tests that follow in the same harness still get their messages and service replies."""

from std_msgs.msg import String

from dpt_ros.ros.testing import qos, wait_for

DOMAIN = 86


def test_a_callback_that_raises_leaves_the_harness_spinning(harness):
    got = harness.collector(String, "chatter")
    failures = []

    def fails_once(msg):
        if not failures:
            failures.append(msg.data)
            raise RuntimeError(f"a test callback failed on {msg.data!r}")

    harness.probe.create_subscription(String, "chatter", fails_once, qos("reliable", 10))
    pub = harness.probe.create_publisher(String, "chatter", qos("reliable", 10))
    wait_for(lambda: pub.get_subscription_count() >= 2, what="discovery")
    for i in range(5):
        pub.publish(String(data=str(i)))
        wait_for(lambda: len(got) > i, what=f"message {i}")   # each one, also after the callback raised
    assert [m.data for m in got] == ["0", "1", "2", "3", "4"]
    assert failures == ["0"]
    assert [str(e) for e in harness.spin_errors] == ["a test callback failed on '0'"]
    assert harness._thread.is_alive()
