"""The device and precision decision (a pure function of probed facts, so every card and OS is a
constructed ``Facts`` here), its one-line problems, the ``devices`` command on this machine, and the
runtime errors a device gives as one line."""

import json
import subprocess
import sys

import pytest
import torch

from blender_stchain.cli_devices import report
from blender_stchain.contracts.errors import DeviceError, StchainError, device_failure
from blender_stchain.engine.device import Card, Facts, arch_supported, decide, diagnose, probe, runtime
from tests.conftest import DATA, REPO

ARCHS = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")  # a CUDA 12.1 wheel's list
RTX_2080 = Card("NVIDIA GeForce RTX 2080", (7, 5), 8.0)
RTX_3060 = Card("NVIDIA GeForce RTX 3060", (8, 6), 12.0)
RTX_5090 = Card("NVIDIA GeForce RTX 5090", (12, 0), 32.0)


def cuda(*cards, archs=ARCHS, **kw):
    return Facts("2.5.1+cu121", "12.1", True, driver="550.54", cards=cards, arch_list=archs, **kw)


def mac(version):
    return Facts("2.5.1", None, False, mps_built=True, mps_available=True, macos=version, mps_fallback=True)


def test_pre_ampere_runs_fp16_although_torch_calls_bf16_supported():
    d = decide(cuda(RTX_2080))
    assert (d.device, d.precision) == ("cuda:0", "fp16") and "emulated" in d.reason
    assert any("bf16 is only emulated on NVIDIA GeForce RTX 2080" in line for line in diagnose(cuda(RTX_2080)))
    asked = decide(cuda(RTX_2080), precision="bf16")  # honoured, with the cost said once
    assert asked.precision == "bf16" and len(asked.warnings) == 1 and "--precision fp16" in asked.warnings[0]


def test_ampere_and_newer_run_bf16():
    for card in (RTX_3060, Card("NVIDIA H100", (9, 0), 80.0)):
        d = decide(cuda(card))
        assert (d.device, d.precision, d.warnings) == ("cuda:0", "bf16", ())
    assert diagnose(cuda(RTX_3060)) == []


def test_macos_13_runs_fp16_and_14_bf16_on_mps():
    assert decide(mac((13, 6))).precision == "fp16"
    assert decide(mac((14, 0))).precision == "bf16"
    assert decide(mac((15, 2)), "mps").device == "mps"
    with pytest.raises(StchainError, match="macOS 14"):
        decide(mac((13, 6)), "mps", "bf16")
    unset = Facts("2.5.1", None, False, mps_built=True, mps_available=True, macos=(14, 4))
    assert any("PYTORCH_ENABLE_MPS_FALLBACK" in w for w in decide(unset).warnings)


def test_too_old_driver_is_one_line_a_warning_with_auto_and_an_error_when_cuda_is_asked():
    f = Facts("2.7.0+cu128", "12.8", False, driver="470.82",
              cuda_warning="CUDA initialization: The NVIDIA driver on your system is too old (found version 11040).")
    line = ("CUDA: NVIDIA driver 470.82 is too old for this torch build (CUDA 12.8, needs driver 525.60 or newer): "
            "update the NVIDIA driver, or install the runtime built for an older CUDA")
    assert diagnose(f) == [line]
    d = decide(f)
    assert d.device == "cpu" and d.warnings == (line + "; running on the CPU (slow) instead",)
    with pytest.raises(StchainError) as e:
        decide(f, "cuda")
    assert str(e.value) == line + "; or use --device cpu"
    no_gpu = Facts("2.7.0+cu128", "12.8", False)  # a CUDA wheel on a machine without an NVIDIA GPU: no problem
    assert diagnose(no_gpu) == [] and decide(no_gpu).warnings == ()
    said_none = Facts("2.7.0+cu128", "12.8", False, cuda_warning="CUDA initialization: Found no NVIDIA driver on "
                      "your system. Please check that you have an NVIDIA GPU and installed a driver")
    assert diagnose(said_none) == [] and decide(said_none).device == "cpu"
    unnamed = Facts("2.7.0+cu128", "12.8", False, cuda_warning="CUDA driver version is insufficient for CUDA "
                    "runtime version")  # no driver version readable, torch's words suffice
    assert diagnose(unnamed)[0].startswith("CUDA: the NVIDIA driver is too old for this torch build (CUDA 12.8")


def test_missing_architecture_is_one_line_and_auto_falls_back():
    f = cuda(RTX_5090)
    line = (f"CUDA: this torch build has no kernels for NVIDIA GeForce RTX 5090 (sm_120; it has {' '.join(ARCHS)}): "
            "install a torch build that lists sm_120 (a newer CUDA)")
    assert diagnose(f) == [line]
    assert decide(f).device == "cpu" and decide(f).warnings == (line + "; running on the CPU (slow) instead",)
    with pytest.raises(StchainError, match="no kernels for NVIDIA GeForce RTX 5090"):
        decide(f, "cuda:0")
    both = cuda(RTX_5090, RTX_3060)  # auto takes the card the build runs on, and says why not the first
    assert decide(both).device == "cuda:1" and decide(both).warnings[0].endswith("; running on cuda:1")


def test_architecture_compatibility_rules():
    assert arch_supported((8, 9), ("sm_80", "sm_86"))  # a cubin of the same major, lower minor
    assert not arch_supported((8, 0), ("sm_86",)) and not arch_supported((12, 0), ARCHS)
    assert arch_supported((12, 0), ("sm_90", "compute_90"))  # PTX is compiled for newer cards
    assert arch_supported((7, 5), ())


def test_explicit_choices_and_their_errors():
    cpu_only = Facts("2.13.0+cpu")
    assert decide(cpu_only).device == "cpu" and decide(cpu_only, "cpu", "bf16").precision == "bf16"
    for device, message in (("cuda", "this torch build has no CUDA"), ("mps", "no MPS"), ("tpu", "unknown device")):
        with pytest.raises(StchainError, match=message):
            decide(cpu_only, device)
    with pytest.raises(StchainError, match="fp16 is not supported on CPU"):
        decide(cpu_only, "cpu", "fp16")
    with pytest.raises(StchainError, match="1 CUDA device"):
        decide(cuda(RTX_3060), "cuda:1")


def test_runtime_on_this_machine_is_the_decision_of_its_probe():
    facts = probe()
    rt = runtime()
    assert str(rt.device) == decide(facts).device and rt.dtype == torch.float32 and rt.notes == ()
    assert runtime("cpu", "bf16", facts=cuda(RTX_2080)).dtype == torch.bfloat16


def test_devices_command_on_this_machine():
    def devices(*args):
        return subprocess.run([sys.executable, "-m", "blender_stchain", "devices", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    text, js, asked = devices(), devices("--json"), devices("--device", "cuda")
    assert text.returncode == 0 and js.returncode == 0
    out = json.loads(js.stdout)
    assert out["lines"] == text.stdout.strip().splitlines() and out["device"] == "cpu"
    assert f"torch {torch.__version__}" in out["lines"][0] and "auto -> cpu, fp32: CPU: fp32" in out["lines"]
    assert [i[0] for i in out["items"]] == ["auto", "cpu"] and out["facts"]["mps_fallback"] is True
    assert asked.returncode == 1 and asked.stdout == ""
    assert asked.stderr.strip().startswith("error: device 'cuda' is not available") and "Traceback" not in asked.stderr


def test_report_lists_cards_and_problems():
    out = report(cuda(RTX_2080, RTX_5090))
    assert out["device"] == "cuda:0" and [i[0] for i in out["items"]] == ["auto", "cpu", "cuda:0", "cuda:1"]
    assert sum("no kernels for NVIDIA GeForce RTX 5090" in line for line in out["lines"]) == 1
    assert "auto -> cuda:0, fp16: NVIDIA GeForce RTX 2080, compute capability 7.5" in " ".join(out["lines"])


def test_device_failures_at_run_time_become_one_line():
    kernel = RuntimeError("CUDA error: no kernel image is available for execution on the device\nCUDA kernel "
                          "errors might be asynchronously reported")
    mps = NotImplementedError("The operator 'aten::_linalg_svd.U' is not currently implemented for the MPS device.")
    for e, fix in ((kernel, "install the runtime built for your card"), (mps, "PYTORCH_ENABLE_MPS_FALLBACK=1")):
        err = device_failure(e)
        assert isinstance(err, DeviceError) and fix in str(err) and "\n" not in str(err)
    assert device_failure(RuntimeError("shapes cannot be multiplied")) is None
    assert device_failure(ValueError("no kernel image is available")) is None


def test_a_device_failure_in_a_command_is_one_line_exit_1(capsys):
    from blender_stchain.cli import guarded

    def command(argv):  # what torch raises when the wheel lacks the card's architecture
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    assert guarded(command, []) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: this torch build has no CUDA kernels for this GPU")


def test_a_run_asking_for_cuda_here_stops_with_one_line(tiny_weights, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "blender_stchain", "run", "--footage",
                           str(DATA / "rgba_frames/davis_camel"), "--frames", "1:2", "--out", str(tmp_path / "r.safetensors"),
                           "--weights", str(tiny_weights), "--allow-random-weights", "--device", "cuda"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-1].startswith("error: device 'cuda' is not available"), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r.safetensors").exists()


def test_an_op_mps_lacks_running_on_the_cpu_is_a_warning_event_once():
    import warnings

    from blender_stchain.engine.device import fallback_events

    said = []
    torch_words = ("The operator 'aten::_linalg_svd.U' is not currently supported on the MPS backend and will fall "
                   "back to run on the CPU. This may have performance implications.")
    with warnings.catch_warnings(record=True) as others:
        warnings.simplefilter("always")
        with fallback_events(said.append):
            warnings.warn(torch_words, UserWarning)
            warnings.warn(torch_words, UserWarning)
            warnings.warn("something else", UserWarning)
    assert said == ["MPS: aten::_linalg_svd.U is missing on the Apple GPU and ran on the CPU (slower); a newer "
                    "macOS or torch may have it"]
    assert [str(w.message) for w in others] == ["something else"]
