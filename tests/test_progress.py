"""The one rate/ETA formatter every long step's progress line uses."""

from rtic.progress import eta, format_eta, rate_eta


def test_rate_and_eta_of_the_items_left():
    assert rate_eta(200, 2.0, 500, "firms") == "100 firms/s, ETA 0m05s"
    assert rate_eta(3, 2.0, 30, "texts") == "1.5 texts/s, ETA 0m20s"
    assert rate_eta(12_000, 1.0, 0, "firms") == "12,000 firms/s, ETA 0m00s"


def test_unknown_rate_gives_an_unknown_eta():
    assert rate_eta(0, 5.0, 10, "sites") == "0.0 sites/s, ETA ?"
    assert rate_eta(10, 0.0, 10, "sites") == "0.0 sites/s, ETA ?"
    assert eta(0, 3.0, 4) == "?"


def test_eta_spelling():
    assert format_eta(59.9) == "0m59s"
    assert format_eta(754) == "12m34s"
    assert format_eta(3 * 3600 + 7 * 60 + 5) == "3h07m"
    assert format_eta(float("nan")) == "?" and format_eta(float("inf")) == "?" and format_eta(-1) == "?"
