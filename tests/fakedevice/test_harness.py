"""The simulated accelerator itself: each rule it enforces fails when broken, and what it counts."""

import threading

import numpy as np
import pytest
import torch

from blender_stchain.engine import device as engine_device
from blender_stchain.engine.models import layers
from tests.fakedevice.harness import FAKE, DeviceRuleError, DeviceTensor, on_device, simulated


@pytest.mark.parametrize("read", [lambda t: t.numpy(), np.asarray, lambda t: t.tolist(), lambda t: np.array(t) + 1])
def test_a_host_read_of_a_device_tensor_fails(read):
    with simulated("cuda"):
        t = torch.arange(4.0, device=FAKE)
        with pytest.raises(DeviceRuleError, match="host read"):
            read(t)
        assert t.cpu().numpy().tolist() == [0.0, 1.0, 2.0, 3.0]  # the hand-over works


def test_mixing_with_a_host_tensor_fails_but_scalars_and_host_indices_pass():
    with simulated("cuda") as dev:
        t = torch.arange(6.0, device=FAKE)
        with pytest.raises(DeviceRuleError, match="mixed with a cpu tensor"):
            t + torch.ones(6)
        with pytest.raises(DeviceRuleError, match="mixed with a cpu tensor"):
            torch.arange(6.0)[torch.tensor([1, 2], device=FAKE)]  # host data, device indices
        assert (t + torch.tensor(2.0)).cpu().tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        assert t[torch.tensor([5, 0])].cpu().tolist() == [5.0, 0.0]
        assert t[[1, 2]].cpu().tolist() == [1.0, 2.0]
        assert dict(dev.syncs) == {("setup", "to_host"): 3}


def test_synchronisations_are_counted_per_stage():
    with simulated("cuda") as dev:
        t = torch.arange(6.0, device=FAKE)
        with dev.staged("a"):
            t.sum().item()
            bool(t.max() > 2)
            t[t > 2] = 0.0
        with dev.staged("b"):
            torch.nonzero(t)
            torch.unique(t)
            t.cpu()
            torch.where(t > 1, t, -t)  # no sync
    assert dict(dev.syncs) == {("a", "item"): 2, ("a", "mask_index"): 1, ("b", "nonzero"): 1,
                               ("b", "unique"): 1, ("b", "to_host"): 1}
    assert dev.per_stage() == {"a": 3, "b": 3}


def test_factories_modules_and_threads_see_the_device():
    with simulated("cuda"):
        model = torch.nn.Linear(3, 2).to(FAKE)
        assert isinstance(model.weight, DeviceTensor) and isinstance(model.weight, torch.nn.Parameter)
        made = []
        worker = threading.Thread(target=lambda: made.append(torch.zeros(2, device=FAKE)))
        worker.start()
        worker.join()
        assert isinstance(made[0], DeviceTensor)
        x = torch.as_tensor(np.ones((4, 3), np.float32), device=FAKE)
        assert isinstance(model(x), DeviceTensor) and model(x).device == FAKE
        assert engine_device.rules(FAKE) == "cuda" and engine_device.geometry_device(FAKE) == FAKE
    assert engine_device.rules(FAKE) == "meta"


@pytest.mark.parametrize("op, message", [
    (lambda: torch.ones(3, device=FAKE).double(), "float64"),
    (lambda: torch.ones(3, device=FAKE, dtype=torch.float64), "float64"),
    (lambda: torch.zeros(3, dtype=torch.long, device=FAKE).scatter_reduce(
        0, torch.zeros(2, dtype=torch.long, device=FAKE), torch.ones(2, dtype=torch.long, device=FAKE), "amin"),
     "scatter_reduce amin"),
    (lambda: torch.unique(torch.tensor([1 << 24, 3], device=FAKE)), "2\\^24"),
    (lambda: torch.sort(torch.tensor([1 << 25, 3], device=FAKE)), "2\\^24"),
    (lambda: torch.linalg.svd(torch.eye(3, device=FAKE)), "linalg_svd"),
])
def test_the_mps_flavour_refuses_what_mps_lacks(op, message):
    with simulated("cuda"):
        op()  # fine on CUDA
    with simulated("mps"):
        assert engine_device.geometry_device(FAKE) == torch.device("cpu")
        with pytest.raises(DeviceRuleError, match=message):
            op()
        torch.unique(torch.tensor([(1 << 24) - 1, 3], device=FAKE))  # below the limit: fine


def test_the_mps_flavour_refuses_device_work_from_a_second_thread():
    errors = []

    def work():
        try:
            torch.ones(2, device=FAKE) + 1
        except DeviceRuleError as e:
            errors.append(str(e))

    for flavour in ("cuda", "mps"):
        with simulated(flavour):
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
    assert len(errors) == 1 and "second thread" in errors[0]


def test_attention_on_mps_runs_in_query_chunks_under_the_score_limit(monkeypatch):
    q, k, v = torch.randn(1, 2, 40, 8), torch.randn(1, 2, 24, 8), torch.randn(1, 2, 24, 8)
    expected = layers.attend(q, k, v)
    monkeypatch.setattr(layers, "MPS_SCORE_ELEMENTS", 2 * 24 * 7)  # 7 queries a call
    with simulated("mps") as dev:
        dev.score_limit = 2 * 24 * 8
        with pytest.raises(DeviceRuleError, match="whole score matrix"):
            torch.nn.functional.scaled_dot_product_attention(*(on_device(t) for t in (q, k, v)))
        out = layers.attend(*(on_device(t) for t in (q, k, v))).cpu()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
