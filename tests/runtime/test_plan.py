"""The build table: stand-in ``nvidia-smi`` / ``rocminfo`` first on PATH for the command line, and
the pure choice for machines this one cannot pretend to be (macOS, Windows, older GPUs)."""

import json
import subprocess
import sys

import pytest

from blender_stchain.contracts.errors import StchainError
from blender_stchain.runtime.plan import Facts, Gpu, choose_build, load_table, parse_rocminfo, parse_smi
from tests.conftest import REPO
from tests.runtime.standins import nvidia_smi, tool

TABLE = json.loads((REPO / "vendor" / "runtimes.json").read_text())["builds"]
BY_NAME = {b["name"]: b for b in TABLE}


def plan_cli(tmp_path, bin_dir=None, *extra):
    path = ":".join([str(bin_dir)] if bin_dir else []) + ":/usr/bin:/bin"
    env = {"PATH": path, "HOME": str(tmp_path), "STCHAIN_RUNTIMES": str(tmp_path / "runtimes")}
    return subprocess.run([sys.executable, "-m", "blender_stchain", "runtime", "plan", *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("driver, build", [("590.44.01", "cu130"), ("560.35.03", "cu126")])
def test_driver_picks_the_cuda_line(driver, build, tmp_path):
    out = plan_cli(tmp_path, nvidia_smi(tmp_path / "bin", driver).parent, "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["action"] == "install" and plan["build"]["name"] == build
    assert plan["facts"]["driver"] == driver and plan["facts"]["gpus"][0]["cc"] == "8.9"
    assert plan["build"]["download_bytes"] == BY_NAME[build]["download_bytes"]
    assert plan["build"]["disk_needed_bytes"] == 2 * BY_NAME[build]["unpacked_bytes"]
    assert plan["build"]["folder"] == f"{build}-{BY_NAME[build]['torch']}"
    text = plan_cli(tmp_path, tmp_path / "bin")  # the same plan for a person
    assert text.returncode == 0 and text.stdout.startswith(f"build: {build}-")
    assert "download: " in text.stdout and "free disk space needed: " in text.stdout


def test_old_driver_is_refused_in_one_line(tmp_path):
    out = plan_cli(tmp_path, nvidia_smi(tmp_path / "bin", "470.256.02").parent)
    print(out.stderr)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: NVIDIA driver 470.256.02 is too old") and "minimum 525" in out.stderr


def test_no_gpu_tool_means_nothing_to_install(tmp_path):
    out = plan_cli(tmp_path, None, "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["action"] == "none" and plan["build"] is None and plan["facts"]["gpus"] == []


def test_amd_on_linux_gets_rocm(tmp_path):
    rocminfo = "Agent 1\n  Name:                    AMD Ryzen 9 7950X\nAgent 2\n  Name:                    gfx1100\n"
    out = plan_cli(tmp_path, tool(tmp_path / "bin", "rocminfo", rocminfo).parent, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["build"]["name"] == "rocm"


def test_a_failing_nvidia_smi_counts_as_no_gpu(tmp_path):
    """A driver that is installed but not loaded: nvidia-smi fails; nothing is planned, no traceback."""
    out = plan_cli(tmp_path, tool(tmp_path / "bin", "nvidia-smi", "NVIDIA-SMI has failed", code=9).parent, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["action"] == "none"


def facts(system="Linux", driver="590.44.01", cc="8.9", name="GPU", vendor="nvidia"):
    return Facts(system, "arm64" if system == "Darwin" else "x64", "cp311", driver if vendor == "nvidia" else None,
                 (Gpu(name, vendor, cc),) if name else ())


def test_pure_choices():
    table = load_table()
    assert choose_build(facts(system="Darwin", name=None), table).action == "none"
    assert "MPS" in choose_build(facts(system="Darwin", name=None), table).reason
    assert choose_build(facts(system="Windows"), table).build.name == "cu130"
    pascal = choose_build(facts(cc="6.1", name="GeForce GTX 1080"), table)  # CUDA 13 and 12.8 dropped it
    assert pascal.build.name == "cu126" and "dropped compute capability 6.1" in pascal.reason
    assert choose_build(facts(driver="575.51", cc="12.0"), table).build.name == "cu128"  # Blackwell, 12.8
    with pytest.raises(StchainError, match=r"no GPU runtime supports the GPU \(compute capability 12.0\) with driver 560.35"):
        choose_build(facts(driver="560.35", cc="12.0"), table)  # Blackwell needs CUDA 12.8's driver
    assert choose_build(facts(system="Windows", vendor="amd", name="gfx1100", cc=None), table).action == "none"
    assert choose_build(facts(driver="580.65.06", cc=None), table).build.name == "cu130"  # cc unknown: by driver


def test_parsers_read_the_tools_output():
    driver, gpus = parse_smi("NVIDIA RTX A6000, 535.183.01, 8.6, 49140\nTesla P100, 535.183.01, 6.0, 16384\n")
    assert driver == "535.183.01" and [(g.name, g.cc, g.memory_mb) for g in gpus] == [
        ("NVIDIA RTX A6000", "8.6", 49140), ("Tesla P100", "6.0", 16384)]
    assert parse_smi("No devices were found\n") == (None, [])
    assert [g.name for g in parse_rocminfo("  Name:   gfx90a\n  Name:   gfx90a\n  Name:  AMD EPYC\n")] == ["gfx90a"]


def test_the_extension_carries_the_table_and_locks(tmp_path):
    """The zip holds the package alone: the table and the locks are staged into it, and the
    installed copy finds them there (not in a repository it does not have)."""
    sys.path.insert(0, str(REPO))
    try:
        import build_addon
    finally:
        sys.path.remove(str(REPO))
    src = build_addon.stage(tmp_path / "stage", [], ["3.11"], ["linux-x64"])
    staged = sorted(p.name for p in (src / "runtime" / "vendor").iterdir())
    assert staged == ["runtime-lock-cu126.txt", "runtime-lock-cu128.txt", "runtime-lock-cu130.txt",
                      "runtime-lock-rocm.txt", "runtimes.json"]
    code = "from blender_stchain.runtime.plan import vendor_file; print(vendor_file('runtimes.json'))"
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(src.parent)!r}); {code}"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(src / "runtime" / "vendor" / "runtimes.json"), out.stderr


def test_the_vendored_locks():
    """cu130 on Linux is complete (hashes from PyPI, numpy never in it); where PyTorch's own index
    was out of reach the lock says so and the installer refuses in one line."""
    from blender_stchain.runtime.install import lock_lines

    text = (REPO / "vendor" / "runtime-lock-cu130.txt").read_text()
    for python in ("cp311", "cp313"):
        lines = lock_lines(text, "cu130", Facts("Linux", "x64", python, "590", ()))
        names = [line.split("==")[0] for line in lines]
        assert names[0] == "torch" and lines[0].startswith("torch==2.13.0 --hash=sha256:")
        assert {"nvidia-cudnn-cu13", "nvidia-cublas", "triton", "sympy"} <= set(names) and "numpy" not in names
    with pytest.raises(StchainError, match="no real hashes yet"):
        lock_lines(text, "cu130", Facts("Windows", "x64", "cp311", "590", ()))
