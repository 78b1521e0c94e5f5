"""Strict loading, clear errors, the check report, make-random and the weights CLI, on files made here."""

import json
import pickle
import shutil
import weakref
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from blender_stchain import cli_weights
from blender_stchain.contracts import safetensors_io
from blender_stchain.contracts.errors import WeightsError
from blender_stchain.engine import weights
from blender_stchain.engine.weights import tensors
from blender_stchain.engine.weights.random_checkpoints import make_random
from tests.engine.parity import fixtures_dir


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_random(tmp_path_factory.mktemp("w") / "root", "tiny", seed=0)


@pytest.fixture
def root(tiny_root, tmp_path):
    """A private copy each test may damage."""
    return shutil.copytree(tiny_root, tmp_path / "root")


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(WeightsError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    print("message:", msg)
    assert "\n" not in msg and info.value.__suppress_context__ in (True, False)
    assert "Traceback" not in msg
    return msg


def test_make_random_tiny_loads_strictly_into_every_model(root):
    for name in weights.COMPONENTS:
        model = weights.load_component(root, name)
        n = sum(p.numel() for p in model.parameters())
        stored = safetensors_io.read_header(weights.component_folder(root, name) / weights.COMPONENTS[name].weights_file)
        assert set(model.state_dict()) == set(stored.tensors)
        assert not any(p.is_meta for p in model.parameters()) and not model.training
        print(f"{name}: {n} parameters, {len(stored.tensors)} tensors")


def test_make_random_is_reproducible_and_randomises_norms(tiny_root, tmp_path):
    again = make_random(tmp_path / "again", "tiny", seed=0, parts=("transformer",))
    other = make_random(tmp_path / "other", "tiny", seed=1, parts=("transformer",))
    rel = "TripoSG/transformer/diffusion_pytorch_model.safetensors"
    assert (again / rel).read_bytes() == (tiny_root / rel).read_bytes()
    a, b = load_file(str(again / rel)), load_file(str(other / rel))
    assert not torch.equal(a["proj_in.weight"], b["proj_in.weight"])
    norm_w = a["blocks.0.norm1.weight"]
    assert 0.5 <= float(norm_w.min()) and float(norm_w.max()) <= 1.5 and float(norm_w.std()) > 0.1
    assert float(a["blocks.0.norm1.bias"].abs().max()) > 0
    assert json.loads(safetensors_io.read_header(again / rel).metadata[weights.RANDOM_KEY]) == {"size": "tiny", "seed": 0}


def test_official_fixture_layouts_load_strictly():
    ref = fixtures_dir()
    for folder, name in [("triposg_dit/transformer", "transformer"), ("triposg_vae", "vae"),
                         ("actionmesh_denoiser", "denoiser"), ("actionmesh_autoencoder/autoencoder", "autoencoder"),
                         ("dinov2/checkpoint", "dinov2")]:
        model = weights.load_component(ref / folder, name)
        assert not weights.weight_identity(ref / folder, name)["random"]
        print(name, type(model).__name__)


def test_truncated_file(root):
    path = root / "ActionMesh/denoiser/model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = error_of(weights.load_component, root, "denoiser")
    assert str(path) in msg and "truncated" in msg and "download it again" in msg


def test_wrong_model_in_folder_by_config_and_by_keys(root):
    shutil.rmtree(root / "TripoSG/transformer")
    shutil.copytree(root / "TripoSG/vae", root / "TripoSG/transformer")
    msg = error_of(weights.load_component, root, "transformer")
    assert "contains the TripoSG VAE (vae)" in msg and "not the TripoSG DiT (transformer)" in msg and "config.json" in msg
    # right config, wrong tensors: recognised from the keys
    (root / "ActionMesh/denoiser/model.safetensors").write_bytes(
        (root / "ActionMesh/autoencoder/model.safetensors").read_bytes())
    msg = error_of(weights.load_component, root, "denoiser")
    assert "model.safetensors contains the ActionMesh autoencoder (autoencoder)" in msg


def test_missing_files_and_folder(root, tmp_path):
    (root / "ActionMesh/autoencoder/model.safetensors").unlink()
    msg = error_of(weights.load_component, root, "autoencoder")
    assert "missing file model.safetensors" in msg and "autoencoder" in msg
    (root / "TripoSG/vae/config.json").unlink()
    assert "missing file config.json" in error_of(weights.load_component, root, "vae")
    msg = error_of(weights.load_component, tmp_path / "nowhere", "dinov2")
    assert "missing folder" in msg and "weights download" in msg


def test_missing_unexpected_and_misshaped_keys(root):
    path = root / "TripoSG/transformer/diffusion_pytorch_model.safetensors"
    good = load_file(str(path))
    sd = dict(good)
    del sd["proj_out.bias"], sd["blocks.3.attn1.to_q.weight"]
    sd["extra.weight"] = torch.zeros(2)
    sd["proj_in.weight"] = torch.zeros(3, 3)
    save_file(sd, str(path))
    msg = error_of(weights.load_component, root, "transformer")
    assert str(path) in msg
    assert "2 missing key(s): blocks.3.attn1.to_q.weight, proj_out.bias" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert "1 mis-shaped key(s): proj_in.weight (3, 3) !=" in msg
    sd = {k: v for k, v in good.items() if not k.startswith("blocks.")}
    save_file(sd, str(path))
    msg = error_of(weights.load_component, root, "transformer")
    assert "(+" in msg and "more)" in msg  # long lists are cut to the first few plus a count


def test_pickle_checkpoints_are_refused(root):
    folder = root / "dinov2-large"
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    msg = error_of(weights.load_component, root, "dinov2")
    assert "pickle" in msg and "execute code" in msg and "pytorch_model.bin" in msg
    # a pickle or a torch zip archive under the safetensors name is recognised by its magic bytes
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    assert "refusing a pickle" in error_of(weights.load_component, root, "dinov2")
    with zipfile.ZipFile(folder / "model.safetensors", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    assert "refusing a pickle" in error_of(weights.load_component, root, "dinov2")
    for suffix in (".pt", ".ckpt", ".pth", ".bin"):
        p = folder / f"x{suffix}"
        p.write_bytes(b"\x00" * 16)
        assert "refusing a pickle" in error_of(tensors.load_tensors, p)


def test_check_report_states_licences_and_random_flag(root):
    report = weights.check(root)
    assert report.ok and report.is_random
    shutil.rmtree(root / "ActionMesh/autoencoder")
    path = root / "TripoSG/vae/diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    (root / "TripoSG/scheduler/scheduler_config.json").write_text("{not json")
    report = weights.check(root)
    states = {p.name: p.state for p in report.parts}
    print("\n".join(report.lines()))
    assert states["autoencoder"] == "missing" and states["vae"] == "corrupt"
    assert states["TripoSG/scheduler/scheduler_config.json"] == "corrupt" and states["denoiser"] == "present"
    lic = {p.name: p.licence for p in report.parts}
    assert "Noncommercial" in lic["denoiser"] and lic["transformer"].startswith("MIT")
    assert lic["dinov2"].startswith("Apache-2.0") and not report.ok


def test_root_discovery_order(monkeypatch, tmp_path):
    monkeypatch.setenv("STCHAIN_WEIGHTS", str(tmp_path / "env"))
    assert weights.find_root(tmp_path / "arg") == tmp_path / "arg"
    assert weights.find_root() == tmp_path / "env"
    monkeypatch.delenv("STCHAIN_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert weights.find_root() == tmp_path / "cache" / "blender_stchain" / "weights"


def test_weight_identity_is_cheap_and_changes_with_the_file(root):
    a = weights.weight_identity(root, "transformer")
    assert a["random"] and "MIT" in a["licence"] and len(a["sha256_header"]) == 64
    make_random(root, "tiny", seed=5, parts=("transformer",))
    assert weights.weight_identity(root, "transformer")["sha256_header"] != a["sha256_header"]


def test_streaming_writer_holds_one_tensor_at_a_time(tmp_path):
    live = []

    def produce(name):
        alive = sum(r() is not None for r in live)
        assert alive == 0, f"{alive} earlier tensor(s) still referenced while producing {name}"
        t = torch.full((64, 32), float(len(live)))
        live.append(weakref.ref(t))
        return t

    specs = [(f"t{i}", "F32", (64, 32)) for i in range(5)]
    tensors.write_streaming(tmp_path / "s.safetensors", specs, produce)
    got = load_file(str(tmp_path / "s.safetensors"))
    assert [float(got[f"t{i}"][0, 0]) for i in range(5)] == [0, 1, 2, 3, 4]


def test_full_size_random_shapes_match_the_official_counts():
    """make-random full writes exactly the official parameter counts (checked on meta: no allocation)."""
    from blender_stchain.engine.weights.random_checkpoints import component_config

    official = {"transformer": 1_439_556_160, "denoiser": 1_439_556_160, "vae": 242_662_017,
                "autoencoder": 214_213_635, "dinov2": 304_368_640}
    for name, count in official.items():
        model = weights.build(name, component_config(name, "full"), "meta")
        assert sum(p.numel() for p in model.state_dict().values()) == count, name


def test_cli_check_and_make_random(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_weights.main(["weights", "make-random", str(out), "--size", "tiny", "--seed", "3"]) == 0
    assert cli_weights.main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "smoke test" in text and "Noncommercial" in text
    (out / "ActionMesh/denoiser/model.safetensors").unlink()
    assert cli_weights.main(["check", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "weights download" in err
    assert cli_weights.main(["make-random", str(out), "--size", "huge"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err


def test_check_flags_parts_that_do_not_fit_together(root):
    make_random(root, "small", seed=0, parts=("dinov2",))  # a valid checkpoint, but 256 wide, not 32
    report = weights.check(root)
    states = {p.name: p for p in report.parts}
    assert states["dinov2"].state == "present"
    fit = states["parts fit together"]
    print(fit.detail)
    assert fit.state == "corrupt" and "denoiser.cross_attention_dim=32 != dinov2.hidden_size=256" in fit.detail
    assert not report.ok
