"""ray-cluster.yaml is valid for Ray's launcher and matches the backends' resources."""

import pathlib

import yaml
import copy

import jsonschema

import pytest
from ray.autoscaler._private.util import prepare_config, validate_config

from qflow.backends import get_backend
from qflow.backends.braket import BRAKET_GATEWAY_RESOURCE

CONFIG = yaml.safe_load((pathlib.Path(__file__).parents[1] / "ray-cluster.yaml").read_text())


def test_validates_with_rays_schema():
    """Ray's own validation (after Ray fills its defaults, as `ray up` does) accepts it."""
    validate_config(prepare_config(copy.deepcopy(CONFIG)))


def test_validation_is_real():
    """The same validation rejects a broken copy, so the check above can fail."""
    broken = copy.deepcopy(CONFIG)
    broken["available_node_types"]["qpu-gateway"]["resources"] = ["qpu"]
    with pytest.raises((RuntimeError, ValueError, jsonschema.ValidationError)):
        validate_config(prepare_config(broken))


def test_gateway_resource_matches_braket_backends():
    """The qpu-gateway workers advertise what braket.aws.qubit asks for."""
    gateway = CONFIG["available_node_types"]["qpu-gateway"]
    arn = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
    wanted = get_backend("braket.aws.qubit", device_arn=arn).ray_resources()
    assert set(wanted) == {BRAKET_GATEWAY_RESOURCE}
    assert set(wanted) <= set(gateway["resources"])
    assert gateway["min_workers"] >= 1


def test_setup_installs_qflow():
    """Every node installs qflow-runtime."""
    assert any("qflow-runtime" in cmd for cmd in CONFIG["setup_commands"])
