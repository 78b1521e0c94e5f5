"""Build the extension zip (no wheels), install it into a temporary Blender user folder, run it."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest

pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = [pytest.mark.build, pytest.mark.blender]

import build_addon  # noqa: E402
from tests.blender.workers import stub_env  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402


def test_lock_files_and_wheel_plan():
    plan = build_addon.wheel_plan(["3.11", "3.13"], list(build_addon.PLATFORM_TAGS))
    torch = {(py, plat): req for py, plat, req in plan if req.name == "torch"}
    assert len(torch) == 6  # one torch per Python x platform
    assert torch[("3.11", "linux-x64")].spec.endswith("+cpu") and torch[("3.11", "linux-x64")].index
    assert not {req.name for _, _, req in plan} & build_addon.NEVER_BUNDLE
    assert "ray" not in {req.name for _, _, req in plan}  # batch runs are cluster-side, never bundled
    cmd = build_addon.pip_download_cmd("3.13", "windows-x64", torch[("3.13", "windows-x64")], REPO / "x")
    assert cmd[cmd.index("--python-version") + 1] == "3.13" and "win_amd64" in cmd and "--only-binary=:all:" in cmd
    with pytest.raises(SystemExit, match="ships with Blender"):
        build_addon.parse_lock("numpy==1.26.4\n")
    with pytest.raises(SystemExit, match="not pinned"):
        build_addon.parse_lock("torch\n")
    text = build_addon.manifest_text((REPO / "blender_manifest.toml").read_text(), ["a-1-py3-none-any.whl"],
                                     ["3.11"], ["linux-x64"])
    assert 'blender_version_max = "5.1.0"' in text and '"./wheels/a-1-py3-none-any.whl"' in text
    assert 'platforms = ["linux-x64"]' in text


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--no-wheels", "--out", str(out)], check=True,
                   cwd=REPO, capture_output=True)
    return {p.name: p for p in out.glob("*.zip")}


def test_zips_per_platform(zips):
    assert sorted(zips) == [f"blender_stchain-0.1.0-{p}.zip" for p in ("linux_x64", "macos_arm64", "windows_x64")]
    with zipfile.ZipFile(zips["blender_stchain-0.1.0-linux_x64.zip"]) as z:
        names = z.namelist()
        manifest = z.read("blender_manifest.toml").decode()
    assert "__init__.py" in names and "bl/scene_writer.py" in names and "contracts/result.py" in names
    assert not any("__pycache__" in n for n in names)
    assert not any(n.startswith(("batch/", "evaluation/")) or "ray" in n.split("/")[-1].split("-")[0] for n in names)
    assert 'platforms = ["linux-x64"]' in manifest and "files =" in manifest and "network =" in manifest


def test_install_and_run_from_installed_copy(zips, tmp_path, tiny_weights):
    home = tmp_path / "home"
    home.mkdir()
    env = stub_env("ok")
    env.update(HOME=str(home), STCHAIN_WORKER_MODULE="stub_worker")
    env.pop("XDG_CONFIG_HOME", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "build" / "install_and_run.py"),
         str(zips["blender_stchain-0.1.0-linux_x64.zip"]), str(tmp_path / "out.blend"),
         str(DATA / "rgba_frames" / "davis_camel"), str(tiny_weights)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(line[0][7:])
    print({k: v for k, v in report.items() if k != "job"})
    assert report["enabled"] and report["registered"] and report["after_disable"] == [False, False]
    assert report["module_file"].startswith(str(home))
    assert report["prefs_weights"].startswith(str(home))
    assert report["rc"] == 0 and report["keys"] == 4  # Basis + 3 frames
    assert (tmp_path / "out.blend").is_file()
    assert report["job"]["job"]["footage"] == str(DATA / "rgba_frames" / "davis_camel")
    assert report["jobs_left"] == []  # the job folder (in the extension's user dir) was removed
    assert report["job"]["result_metadata"]["engine_file"].startswith(str(home))  # worker ran the installed engine
    assert report["job"]["result"] == str(tmp_path / "out_4dmesh.safetensors")  # kept beside the .blend
    # Check Weights from the installed copy: the empty user folder, then random tiny weights
    missing, present = report["weights_checks"]
    print(missing, present)
    assert missing["outcome"] == ["CANCELLED"] and "unrecognized" not in missing["message"]
    assert missing["message"].startswith("11 missing of 15 checks at " + str(home))  # 4 optional SAM 2.1 sizes
    assert "weights download" in missing["message"]
    assert present["outcome"] == ["FINISHED"] and "random checkpoints: results are smoke tests" in present["message"]
    assert f"weights root: {tiny_weights}" in present["message"]


def test_one_platform_build_leaves_no_stale_zips(zips, tmp_path):
    out = tmp_path / "dist"
    out.mkdir()
    for z in zips.values():  # an earlier all-platform build in the same folder
        shutil.copy2(z, out / z.name)
    subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--no-wheels", "--platform", "linux-x64",
                    "--out", str(out)], check=True, cwd=REPO, capture_output=True)
    assert sorted(p.name for p in out.glob("*.zip")) == ["blender_stchain-0.1.0-linux_x64.zip"]
