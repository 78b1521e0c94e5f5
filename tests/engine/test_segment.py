"""SAM 2.1 segmentation: checkpoint layout and strict loading, prompts, propagation in both
directions against transformers' own full-clip propagation, the bounded memory bank, streaming order,
cancel. Random tiny weights in the official layout: masks are meaningless, so shapes, order,
determinism and exact agreement are asserted, not quality."""

import json
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blender_stchain.contracts.errors import Cancelled, WeightsError
from blender_stchain.contracts.prompts import Box, Point, PromptError, parse, resolve
from blender_stchain.contracts.safetensors_io import read_header
from blender_stchain.engine.segment import catalogue, model as sam2
from blender_stchain.engine.segment.propagate import Propagator, pixel_values
from blender_stchain.engine.weights.check import segment_statuses
from blender_stchain.engine.weights.tensors import load_tensors, write_streaming

H, W = 72, 96


@pytest.fixture(scope="module")
def sam2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam2")
    sam2.write_random(root, "tiny", seed=0)
    return root


@pytest.fixture(scope="module")
def net(sam2_root):
    return sam2.load(sam2_root)[0]


def clip(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((H, W, 3)) * 255).astype(np.uint8) for _ in range(n)]


# ------------------------------------------------------------------------------------------------ weights

def test_random_checkpoint_has_the_official_layout_and_loads_strictly(sam2_root):
    folder = sam2_root / "sam2.1-hiera-tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "sam2_video" and cfg["architectures"] == ["Sam2VideoModel"]
    header = read_header(folder / "model.safetensors")
    assert "stchain_random" in header.metadata
    assert {"vision_encoder.backbone.patch_embed.projection.weight", "memory_attention.layers.0.self_attn.q_proj.weight",
            "memory_encoder.mask_downsampler.final_conv.weight", "object_pointer_proj.layers.0.weight"} <= set(header.tensors)
    model, is_random = sam2.load(sam2_root)
    assert is_random and type(model).__name__ == "Sam2VideoModel" and not model.training
    stored = {k: tuple(i.shape) for k, i in header.tensors.items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == stored
    again = sam2.load(sam2_root)[0].state_dict()
    assert all(torch.equal(v, again[k]) for k, v in model.state_dict().items())  # reproducible files


def _rewrite(src, dst, drop=(), reshape=None):
    header = read_header(src / "model.safetensors")
    tensors = {k: v for k, v in load_tensors(src / "model.safetensors").items() if k not in drop}
    if reshape:
        tensors[reshape] = torch.zeros(3, 3)
    dst.mkdir(parents=True)
    (dst / "config.json").write_text((src / "config.json").read_text())
    write_streaming(dst / "model.safetensors", [(k, "F32", tuple(v.shape)) for k, v in tensors.items()],
                    lambda k: tensors[k], dict(header.metadata))


def test_wrong_checkpoints_are_one_clear_error(sam2_root, tmp_path):
    src = sam2_root / "sam2.1-hiera-tiny"
    _rewrite(src, tmp_path / "a" / "sam2.1-hiera-tiny", drop=("object_pointer_proj.layers.0.weight",))
    with pytest.raises(WeightsError, match=r"1 missing key\(s\): object_pointer_proj.layers.0.weight"):
        sam2.load(tmp_path / "a")
    _rewrite(src, tmp_path / "b" / "sam2.1-hiera-tiny", reshape="mask_decoder.obj_score_token.weight")
    with pytest.raises(WeightsError, match=r"mis-shaped key\(s\): mask_decoder.obj_score_token.weight \(3, 3\)"):
        sam2.load(tmp_path / "b")
    pickled = tmp_path / "c" / "sam2.1-hiera-tiny"
    pickled.mkdir(parents=True)
    (pickled / "config.json").write_text((src / "config.json").read_text())
    (pickled / "sam2.1_hiera_tiny.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(WeightsError, match=r"only sam2.1_hiera_tiny.pt, a pickle, which is refused"):
        sam2.load(tmp_path / "c")
    with pytest.raises(WeightsError, match=r"weights download --parts sam2.1-hiera-tiny"):
        sam2.load(tmp_path / "none")
    statuses = {s.name: s for s in segment_statuses(tmp_path / "a")}
    assert statuses["sam2.1-hiera-tiny"].state == "corrupt" and statuses["sam2.1-hiera-large"].state == "absent"


def test_model_names_and_download_parts():
    from blender_stchain.engine.weights.fetch import _repo, resolve_parts

    assert catalogue.model_name("base-plus") == "sam2.1-hiera-base-plus" == catalogue.model_name("sam2.1-hiera-base-plus")
    assert resolve_parts(["sam2.1-hiera-large", "triposg"]) == ["sam2.1-hiera-large", "TripoSG"]
    assert resolve_parts(None)[-1] == "sam2.1-hiera-tiny"
    assert _repo("sam2.1-hiera-small") == ("facebook/sam2.1-hiera-small", ["config.json", "model.safetensors"])
    with pytest.raises(WeightsError, match="choose one of sam2.1-hiera-tiny"):
        catalogue.model_name("huge")


# ------------------------------------------------------------------------------------------------ prompts

def test_prompt_text_forms():
    assert parse(["12.5,40@7", "-3,4", " 5 , 6 @ 2 "], ["1,2,30,40@3"]) == parse(["12.5,40@7", "-3,4", "5,6@2"], ["1,2,30,40@3"])
    p = parse(["12.5,40@7", "-3,4"], ["1,2,30,40@3"])
    assert p.points == (Point(12.5, 40, True, 7), Point(3, 4, False, None)) and p.boxes == (Box(1, 2, 30, 40, 3),)
    for bad in ("12", "a,b", "1,2@x", "1,2,3"):
        with pytest.raises(PromptError, match="expected X,Y"):
            parse([bad])
    with pytest.raises(PromptError, match="expected X0,Y0,X1,Y1"):
        parse(boxes=["1,2,3"])


def test_prompts_are_checked_against_frames_and_footage_size():
    numbers = tuple(range(10, 20))
    fps = resolve(parse(["5,6", "-1,1", "7,8@15"], ["1,2,30,40@15"]), numbers, (W, H))
    assert [(f.index, f.frame, f.labels, f.box) for f in fps] == [(0, 10, (1, 0), None), (5, 15, (1,), (1, 2, 30, 40))]
    cases = [
        (parse([]), "no object to segment: mark the object: --segment X,Y"),
        (parse(["5,6@9"]), "point 5,6 is on frame 9, outside the chosen frames 10-19"),
        (parse(["97,6"]), r"point 97,6 \(frame 10\) is outside the 96x72 footage"),
        (parse(["-5,6"]), "frame 10 has only background points"),
        (parse(boxes=["1,2,3,4", "2,3,4,5"]), "two boxes on frame 10"),
        (parse(boxes=["5,2,3,4"]), "needs X0 < X1 and Y0 < Y1"),
        (parse(boxes=["1,2,300,4"]), "reaches outside the 96x72 footage"),
    ]
    for prompts, message in cases:
        with pytest.raises(PromptError, match=message):
            resolve(prompts, numbers, (W, H))


# ------------------------------------------------------------------------------------------------ propagation

def stock(net, frames, fps):
    """transformers' own propagation over a session holding the whole clip (the reference)."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    s = net.config.image_size
    video = torch.stack([pixel_values(f, s, "cpu") for f in frames])
    sess = Sam2VideoInferenceSession(video=video, video_height=H, video_width=W, dtype=torch.float32)
    obj = sess.obj_id_to_idx(1)
    out = {}

    def keep(o):
        logits = F.interpolate(o.pred_masks[:1], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        out[o.frame_idx] = ((logits > 0).numpy(), float(o.object_score_logits.flatten()[0]))

    with torch.inference_mode():
        for fp in fps:
            pts = [(x * s / W, y * s / H) for x, y in fp.points]
            labels = list(fp.labels)
            if fp.box:
                pts = [(fp.box[0] * s / W, fp.box[1] * s / H), (fp.box[2] * s / W, fp.box[3] * s / H)] + pts
                labels = [2, 3] + labels
            sess.add_point_inputs(obj, fp.index, {"point_coords": torch.tensor(pts).view(1, 1, -1, 2),
                                                  "point_labels": torch.tensor(labels, dtype=torch.int32).view(1, 1, -1)})
            sess.obj_with_new_inputs = [1]
            keep(net(sess, frame_idx=fp.index))
        for reverse in (False, True):
            for o in net.propagate_in_video_iterator(sess, start_frame_idx=fps[0].index, reverse=reverse):
                keep(o)
    return out


@pytest.mark.parametrize("points, boxes", [(["60,40@9", "-10,10@9"], ["5,5,50,40@25"]), ([], ["10,10,80,60@1"])])
def test_both_directions_match_transformers_full_clip_propagation(net, points, boxes):
    frames = clip(30)
    fps = resolve(parse(points, boxes), tuple(range(1, 31)), (W, H))
    got = list(Propagator(net, lambda i: frames[i], 30, (W, H)).run(fps))
    ref = stock(net, frames, fps)
    assert sorted(m.index for m in got) == list(range(30))
    for m in got:
        assert m.mask.shape == (H, W) and m.mask.dtype == bool
        assert np.array_equal(m.mask, ref[m.index][0]) and m.score == pytest.approx(ref[m.index][1], abs=1e-6), m.index
    areas = [m.mask.mean() for m in got]
    print("mask areas", np.round(areas[:6], 3))
    assert 0.05 < np.mean(areas) < 0.95  # random weights: mixed masks, not all empty / all full


def test_masks_stream_prompted_frame_first_then_forward_then_backward_and_repeat_exactly(net):
    frames = clip(20, seed=1)
    reads = []

    def read(i):
        reads.append(i)
        return frames[i]

    fps = resolve(parse(["30,30@8", "40,20@15"]), tuple(range(1, 21)), (W, H))
    got = list(Propagator(net, read, 20, (W, H)).run(fps))
    assert [m.index for m in got] == [7, 14] + list(range(8, 14)) + list(range(15, 20)) + list(range(6, -1, -1))
    assert [m.prompted for m in got[:3]] == [True, True, False]
    assert sorted(reads) == list(range(20))  # every frame decoded once
    again = list(Propagator(net, lambda i: frames[i], 20, (W, H)).run(fps))
    assert all(np.array_equal(a.mask, b.mask) and a.score == b.score for a, b in zip(got, again))


def test_memory_bank_stays_bounded_and_frames_are_not_kept(net):
    frames = clip(4)
    prop = Propagator(net, lambda i: frames[i % 4], 120, (W, H))
    sizes = []
    for m in prop.run(resolve(parse(["30,30@40"]), tuple(range(1, 121)), (W, H))):
        outs = prop.session.output_dict_per_obj[0]["non_cond_frame_outputs"]
        sizes.append(len(outs))
        assert not prop.session.processed_frames
        assert all(abs(t - m.index) <= prop.keep or 39 <= t <= 39 + prop.keep for t in outs)
    print("stored outputs: max", max(sizes), "of 120 frames; keep", prop.keep)
    assert max(sizes) <= 2 * prop.keep + 1


def test_an_empty_mask_on_the_prompted_frame_is_one_clear_error(sam2_root):
    net = sam2.load(sam2_root)[0]
    with torch.no_grad():
        net.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(-50.0)  # the object is "absent" everywhere
    fps = resolve(parse(["30,30@3"]), tuple(range(1, 6)), (W, H))
    frames = clip(5)
    with pytest.raises(PromptError, match="the mask on prompted frame 3 is empty: the prompt does not pick an object"):
        list(Propagator(net, lambda i: frames[i], 5, (W, H)).run(fps))


def test_cancel_stops_within_a_second_even_inside_a_frame(tmp_path):
    sam2.write_random(tmp_path, "small", seed=0)  # 256 px input: slower frames than tiny
    net = sam2.load(tmp_path)[0]
    frames = clip(2)
    flag = threading.Event()
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if flag.is_set():
            raise Cancelled()

    prop = Propagator(net, lambda i: frames[i % 2], 10_000, (W, H), check)
    result = {}

    def work():
        try:
            for m in prop.run(resolve(parse(["30,30"]), tuple(range(1, 10_001)), (W, H))):
                result["last"] = m.index
        except Cancelled:
            result["cancelled"] = time.monotonic()

    t = threading.Thread(target=work)
    t.start()
    time.sleep(1.5)
    asked = time.monotonic()
    flag.set()
    t.join(10)
    print(f"cancelled {result['cancelled'] - asked:.3f} s after the request, at frame {result.get('last')}")
    assert result["cancelled"] - asked < 1.0
    assert calls["n"] > 2 * result.get("last", 0)  # checked inside frames, not only between them
    assert not prop.session.processed_frames


def test_weights_make_random_and_check_include_the_default_sam2_size(tmp_path, capsys):
    from blender_stchain import cli_weights

    assert cli_weights.main(["make-random", str(tmp_path), "--size", "tiny"]) == 0
    assert sorted(p.name for p in (tmp_path / "sam2.1-hiera-tiny").iterdir()) == ["config.json", "model.safetensors"]
    assert cli_weights.main(["check", str(tmp_path)]) == 0  # absent optional sizes do not fail the check
    lines = capsys.readouterr().out.splitlines()
    assert "  present  sam2.1-hiera-tiny  [Apache-2.0 (facebook/sam2.1-hiera-*)] [RANDOM: smoke test only]" in lines
    assert any(line.startswith("  absent   sam2.1-hiera-large") for line in lines)
