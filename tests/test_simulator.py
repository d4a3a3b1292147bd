"""The fleet simulator reproduces the AI4I 2020 process: statistics, rules, determinism, scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predmaint import schema
from predmaint.scenarios import Scenario
from predmaint.simulator import SimulationSpec, machine_ids, paced, simulate
from predmaint.stats import describe


def test_real_file_has_the_published_figures(ai4i):
    # The reference the simulator is judged against is itself checked against the dataset README.
    real = describe(ai4i)
    assert len(ai4i) == 10_000
    assert ai4i["machine_failure"].sum() == 339
    assert ai4i["product_type"].value_counts().to_dict() == {"L": 6000, "M": 2997, "H": 1003}
    assert real["speed_torque_corr"] == pytest.approx(-0.875, abs=0.005)
    assert real["power_w_mean"] == pytest.approx(6280, abs=1)


# statistic: absolute tolerance between the simulated fleet and the real file
STATISTIC_TOLERANCES = {
    "air_temperature_k_mean": 0.5,
    "air_temperature_k_sd": 0.25,
    "air_temperature_k_step_sd": 0.01,
    "process_temperature_k_mean": 0.5,
    "process_temperature_k_sd": 0.2,
    "delta_t_k_mean": 0.15,
    "delta_t_k_sd": 0.1,
    "rotational_speed_rpm_mean": 10.0,
    "rotational_speed_rpm_sd": 8.0,
    "torque_nm_mean": 0.3,
    "torque_nm_sd": 0.3,
    "speed_torque_corr": 0.02,
    "power_w_mean": 40.0,
    "power_w_sd": 40.0,
    "tool_wear_min_mean": 4.0,
    "tool_wear_min_sd": 3.0,
    "share_L": 0.01,
    "share_M": 0.01,
    "share_H": 0.01,
    "rate_machine_failure": 0.004,
}


@pytest.mark.parametrize("statistic", sorted(STATISTIC_TOLERANCES))
def test_statistics_match_the_real_file(fleet, ai4i, statistic):
    simulated, real = describe(fleet)[statistic], describe(ai4i)[statistic]
    assert simulated == pytest.approx(real, abs=STATISTIC_TOLERANCES[statistic])


@pytest.mark.parametrize("mode", ["twf", "hdf", "pwf", "osf"])
def test_failure_mode_rates_match_the_real_file(fleet, ai4i, mode):
    assert fleet[mode].mean() == pytest.approx(ai4i[mode].mean(), rel=0.3)


def test_random_failures_are_one_in_a_thousand(fleet):
    assert fleet["rnf"].mean() == pytest.approx(0.001, abs=0.0002)


def test_temperatures_are_slow_random_walks(simulate_frame):
    one = simulate_frame(machines=1, steps=10_000, seed=4)  # as long as the real file
    assert one["air_temperature_k"].autocorr() > 0.99
    assert (one["process_temperature_k"] - one["air_temperature_k"]).autocorr() > 0.98


def assert_rules_hold(frame: pd.DataFrame) -> None:
    delta_t = frame["process_temperature_k"] - frame["air_temperature_k"]
    speed, torque, wear = frame["rotational_speed_rpm"], frame["torque_nm"], frame["tool_wear_min"]
    power = torque * speed * 2 * np.pi / 60
    hdf = (delta_t < 8.6) & (speed < 1380)
    pwf = (power < 3500) | (power > 9000)
    osf = wear * torque > frame["product_type"].map({"L": 11_000, "M": 12_000, "H": 13_000})
    assert (frame["hdf"] == hdf.astype(int)).all()
    assert (frame["pwf"] == pwf.astype(int)).all()
    assert (frame["osf"] == osf.astype(int)).all()
    modes = frame[["twf", "hdf", "pwf", "osf", "rnf"]].any(axis=1)
    assert (frame["machine_failure"] == modes.astype(int)).all()
    # TWF only at a tool change (the machine's next reading shows a new tool) at 200–230 min (+ one step).
    ordered = frame.sort_values(["machine_id", "seq"])
    next_wear = ordered.groupby("machine_id")["tool_wear_min"].shift(-1)
    twf = ordered[ordered["twf"] == 1]
    assert twf["tool_wear_min"].between(200, 240).all()
    assert (next_wear[twf.index].dropna() == 0).all()


def test_failure_modes_follow_the_published_rules_exactly(fleet):
    assert fleet["hdf"].sum() > 100 and fleet["pwf"].sum() > 100 and fleet["osf"].sum() > 100
    assert_rules_hold(fleet)


def test_tool_wear_grows_by_product_type_of_the_previous_step(fleet):
    ordered = fleet.sort_values(["machine_id", "seq"])
    step = ordered.groupby("machine_id")["tool_wear_min"].diff()
    previous_type = ordered.groupby("machine_id")["product_type"].shift()
    growing = step >= 0
    expected = previous_type[growing].map({"L": 2, "M": 3, "H": 5})
    assert (step[growing] == expected).all()
    # Tools are replaced (wear back to 0) at 200–230 min.
    assert ordered["tool_wear_min"][(step < 0).shift(-1, fill_value=False)].between(200, 235).all()


def test_done_when_fleet_of_20_by_2000(simulate_frame, ai4i):
    frame = simulate_frame(machines=20, steps=2000, seed=1)
    assert len(frame) == 40_000
    assert (schema.check_frame(frame) == "").all()
    assert_rules_hold(frame)
    assert frame["machine_failure"].mean() == pytest.approx(ai4i["machine_failure"].mean(), abs=0.008)


def test_layout_of_the_stream(simulate_frame):
    frame = simulate_frame(machines=3, steps=5, seed=0, interval_seconds=30)
    assert list(frame.columns) == list(schema.FIELD_NAMES)
    assert list(frame["machine_id"][:3]) == ["M0001", "M0002", "M0003"]
    one = frame[frame["machine_id"] == "M0002"]
    assert list(one["seq"]) == [0, 1, 2, 3, 4]
    assert (one["timestamp"].diff().dropna() == pd.Timedelta(seconds=30)).all()
    assert str(one["timestamp"].iloc[0]) == "2026-01-01 00:00:00+00:00"


def test_same_seed_same_readings_whatever_the_chunking():
    spec = SimulationSpec(machines=7, steps=300, seed=3)
    whole = pd.concat(simulate(spec, chunk_readings=1_000_000), ignore_index=True)
    tiny = pd.concat(simulate(spec, chunk_readings=5), ignore_index=True)
    pd.testing.assert_frame_equal(whole, tiny)


def test_other_seed_other_readings(simulate_frame):
    a = simulate_frame(machines=2, steps=50, seed=1)
    b = simulate_frame(machines=2, steps=50, seed=2)
    assert not a["torque_nm"].equals(b["torque_nm"])


def test_a_machine_reads_the_same_in_any_fleet_size(simulate_frame):
    small = simulate_frame(machines=3, steps=100, seed=9)
    large = simulate_frame(machines=30, steps=100, seed=9)
    pd.testing.assert_frame_equal(
        small.reset_index(drop=True),
        large[large["machine_id"].isin(machine_ids(3))].reset_index(drop=True),
    )


def test_machine_ids_widen_for_large_fleets():
    assert machine_ids(2) == ["M0001", "M0002"]
    assert machine_ids(12_345)[-1] == "M12345"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"machines": 0, "steps": 1}, "--machines"),
        ({"machines": 1, "steps": 0}, "--steps"),
        ({"machines": 1, "steps": 1, "seed": -1}, "--seed"),
        ({"machines": 1, "steps": 1, "interval_seconds": 0}, "--interval"),
        ({"machines": 1, "steps": 1, "interval_seconds": float("nan")}, "--interval"),
        ({"machines": 1, "steps": 1, "onset": -5}, "--onset"),
    ],
)
def test_bad_specs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulationSpec(**kwargs)


# --- drift scenarios --------------------------------------------------------------------------
ONSET = 300


@pytest.fixture(scope="module")
def baseline(simulate_frame):
    return simulate_frame(machines=60, steps=600, seed=11)


def scenario_pair(simulate_frame, baseline, scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    drifted = simulate_frame(machines=60, steps=600, seed=11, scenario=scenario, onset=ONSET)
    before = drifted["seq"] < ONSET
    pd.testing.assert_frame_equal(drifted[before], baseline[before])  # nothing changes before onset
    return baseline[~before], drifted[~before]


def test_sensor_bias_raises_torque_readings_by_15_percent(simulate_frame, baseline):
    base, drifted = scenario_pair(simulate_frame, baseline, Scenario.sensor_bias)
    assert drifted["torque_nm"].sum() / base["torque_nm"].sum() == pytest.approx(1.15, abs=0.005)
    # The machine is unchanged: the same failures happen, the sensor just misreports torque.
    assert (drifted["machine_failure"].to_numpy() == base["machine_failure"].to_numpy()).all()


def test_cooling_degradation_narrows_delta_t_by_1_5_k(simulate_frame, baseline):
    base, drifted = scenario_pair(simulate_frame, baseline, Scenario.cooling_degradation)

    def delta_t(frame):
        return frame["process_temperature_k"] - frame["air_temperature_k"]

    assert delta_t(base).mean() - delta_t(drifted).mean() == pytest.approx(1.5, abs=0.05)
    assert drifted["hdf"].mean() > 2 * base["hdf"].mean()
    assert_rules_hold(drifted)


def test_product_mix_makes_half_the_products_h(simulate_frame, baseline):
    base, drifted = scenario_pair(simulate_frame, baseline, Scenario.product_mix)
    assert (base["product_type"] == "H").mean() == pytest.approx(0.1, abs=0.01)
    assert (drifted["product_type"] == "H").mean() == pytest.approx(0.5, abs=0.01)
    shares = drifted["product_type"].value_counts(normalize=True)
    assert shares["L"] / shares["M"] == pytest.approx(2.0, rel=0.05)
    assert_rules_hold(drifted)


def test_noisy_sensors_double_the_noise(simulate_frame, baseline):
    base, drifted = scenario_pair(simulate_frame, baseline, Scenario.noisy_sensors)
    assert drifted["torque_nm"].std() / base["torque_nm"].std() == pytest.approx(2.0, abs=0.1)
    # Speed noise around the speed-torque curve, measured against the true speed of the same reading.
    log_speed_noise = np.log(
        drifted["rotational_speed_rpm"].to_numpy() / base["rotational_speed_rpm"].to_numpy()
    )
    assert np.sqrt(0.0332**2 + log_speed_noise.var()) / 0.0332 == pytest.approx(2.0, abs=0.1)
    assert (drifted["machine_failure"].to_numpy() == base["machine_failure"].to_numpy()).all()


def test_wear_acceleration_doubles_wear_growth(simulate_frame, baseline):
    base, drifted = scenario_pair(simulate_frame, baseline, Scenario.wear_acceleration)

    def growth(frame):
        step = frame.sort_values(["machine_id", "seq"]).groupby("machine_id")["tool_wear_min"].diff()
        return step[step > 0].mean()

    assert growth(drifted) / growth(base) == pytest.approx(2.0, abs=0.02)
    assert drifted["twf"].sum() > 1.5 * base["twf"].sum()  # tools reach their end twice as often
    assert_rules_hold(drifted)


def test_paced_releases_readings_at_the_requested_rate(simulate_frame):
    frame = simulate_frame(machines=10, steps=20, seed=0)
    now = [0.0]
    released_at = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    for part in paced(iter([frame]), rate=100.0, clock=lambda: now[0], sleep=sleep):
        released_at.append((now[0], len(part)))
    assert sum(n for _, n in released_at) == 200
    assert max(n for _, n in released_at) == 5  # 1/20 s of readings per batch
    assert released_at[-1][0] == pytest.approx(1.95)  # 200 readings at 100/s: the last batch at 1.95 s


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_paced_rejects_bad_rates(rate):
    with pytest.raises(ValueError, match="--rate"):
        list(paced(iter([]), rate))


def test_streams_in_bounded_chunks_for_any_length():
    spec = SimulationSpec(machines=3, steps=10**12, seed=0)  # never materialised
    chunks = simulate(spec, chunk_readings=999)
    sizes = [len(next(chunks)) for _ in range(3)]
    assert sizes == [999, 999, 999]
