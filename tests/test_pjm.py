"""PJM loader: the cleaning of each quirk on a small synthetic series, and one
real region read end to end."""

import numpy as np
import pandas as pd
import pytest

from l2n_jax.usecases import pjm


def _raw(stamps, values):
    return pd.Series(values, index=pd.to_datetime(stamps), dtype="float64")


def _quirky():
    """Six hourly labels, file order unsorted, 02:00 twice, 04:00 missing."""
    stamps = ["2015-11-01 03:00", "2015-11-01 00:00", "2015-11-01 01:00",
              "2015-11-01 02:00", "2015-11-01 02:00", "2015-11-01 05:00"]
    return _raw(stamps, [30.0, 0.0, 10.0, 18.0, 22.0, 50.0])


def test_clean_sorts_averages_duplicates_and_fills_the_gap():
    frame, report = pjm.clean(_quirky(), "TEST")
    expected = pd.date_range("2015-11-01 00:00", "2015-11-01 05:00", freq="h")
    assert list(frame.columns) == ["load"]
    pd.testing.assert_index_equal(frame.index, expected, check_names=False)
    # 02:00 is the mean of 18 and 22; 04:00 is halfway between 30 and 50.
    np.testing.assert_allclose(frame["load"], [0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    assert report == {
        "rows": 6, "out_of_order": 1, "nan_values": 0, "duplicate_hours": 1,
        "duplicate_rows_dropped": 1, "missing_hours_filled": 1, "gaps": 1,
        "longest_gap_hours": 1, "hours": 6,
    }


def test_clean_treats_a_nan_value_as_a_missing_hour():
    raw = _raw(pd.date_range("2020-01-01", periods=4, freq="h"), [1.0, np.nan, 3.0, 4.0])
    frame, report = pjm.clean(raw, "TEST")
    np.testing.assert_allclose(frame["load"], [1.0, 2.0, 3.0, 4.0])
    assert report["nan_values"] == 1 and report["missing_hours_filled"] == 1


def test_clean_refuses_a_gap_longer_than_max_gap_and_names_region_and_gap():
    stamps = pd.date_range("2020-01-01", periods=10, freq="h").delete([3, 4, 5, 6])
    raw = _raw(stamps, np.arange(6.0))
    message = r"'XYZ'.*gap of 4 missing hours from 2020-01-01 03:00"
    with pytest.raises(ValueError, match=message):
        pjm.clean(raw, "XYZ", max_gap=3)
    frame, report = pjm.clean(raw, "XYZ", max_gap=4)
    assert report["longest_gap_hours"] == 4 and len(frame) == 10


def test_clean_refuses_timestamps_off_the_hour():
    raw = _raw(["2020-01-01 00:00", "2020-01-01 00:30"], [1.0, 2.0])
    with pytest.raises(ValueError, match="off the hour"):
        pjm.clean(raw, "TEST")


def test_read_region_is_sorted_hourly_and_complete():
    frame = pjm.read_region("EKPC")
    index = frame.index
    assert index.is_monotonic_increasing and index.is_unique
    assert ((index[1:] - index[:-1]) == pd.Timedelta(hours=1)).all()
    assert not frame["load"].isna().any() and (frame["load"] > 0).all()
    report = pjm.cleaning_report("EKPC")
    # 4 fall-back duplicates (2014-2017) and 6 missing hours, as the data README says.
    assert report["duplicate_hours"] == 4 and report["missing_hours_filled"] == 6
    assert report["hours"] == len(frame)


def test_read_common_is_the_intersection_of_spans():
    frame = pjm.read_common(("EKPC", "DEOK"), end="2013-06-30 23:00")
    assert list(frame.columns) == ["EKPC", "DEOK"]
    assert frame.index[0] == pjm.read_region("EKPC").index[0]  # EKPC starts later
    assert frame.index[-1] == pd.Timestamp("2013-06-30 23:00")
    assert not frame.isna().any().any()


def test_read_common_without_overlap_and_unknown_region_raise():
    with pytest.raises(ValueError, match="no common hours"):
        pjm.read_common(("NI", "EKPC"))
    with pytest.raises(ValueError, match="unknown region 'XX'"):
        pjm.read_region("XX")
