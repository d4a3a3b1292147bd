"""Named drift scenarios of the fleet simulator (kept import-light for the CLI)."""

from __future__ import annotations

from enum import StrEnum


class Scenario(StrEnum):
    """Named drift scenarios, applied from the onset step on."""

    none = "none"
    sensor_bias = "sensor_bias"
    cooling_degradation = "cooling_degradation"
    product_mix = "product_mix"
    noisy_sensors = "noisy_sensors"
    wear_acceleration = "wear_acceleration"


DESCRIPTIONS: dict[Scenario, str] = {
    Scenario.none: "no drift",
    Scenario.sensor_bias: "the torque sensor reads 15 % high; the machine and its labels are unchanged",
    Scenario.cooling_degradation: "process − air temperature falls by 1.5 K (more heat dissipation failures)",
    Scenario.product_mix: "the share of H products rises from 10 % to 50 % (L:M stays 2:1)",
    Scenario.noisy_sensors: "torque and speed measurement noise doubles in sd; labels follow the true values",
    Scenario.wear_acceleration: "tools wear twice as fast",
}
