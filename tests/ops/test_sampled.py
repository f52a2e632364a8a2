import logging

from bastion.ops.sampled import SampledLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_writes_one_line_per_period_and_then_says_how_many_were_left_out(caplog):
    clock = Clock()
    sampled = SampledLog(logging.getLogger("test.sampled"), period=10, clock=clock)
    with caplog.at_level(logging.WARNING, "test.sampled"):
        for i in range(1000):
            sampled.warning("store unavailable: %s", i)
        assert [r.getMessage() for r in caplog.records] == ["store unavailable: 0"]
        clock.now += 9.9
        sampled.warning("store unavailable: %s", "late")
        assert len(caplog.records) == 1
        clock.now += 0.1
        sampled.warning("store unavailable: %s", "next")
        assert caplog.records[-1].getMessage() == ("store unavailable: next (and 1000 more like it in the last 10 s)")
        sampled.warning("another kind of trouble")  # each message is sampled on its own
        assert caplog.records[-1].getMessage() == "another kind of trouble"
        assert len(caplog.records) == 3


def test_nothing_is_counted_when_the_level_is_off(caplog):
    clock = Clock()
    logger = logging.getLogger("test.sampled.quiet")
    sampled = SampledLog(logger, period=10, clock=clock)
    with caplog.at_level(logging.ERROR, "test.sampled.quiet"):
        for _ in range(5):
            sampled.warning("hidden")
    with caplog.at_level(logging.WARNING, "test.sampled.quiet"):
        sampled.warning("hidden")
    assert [r.getMessage() for r in caplog.records] == ["hidden"]
