"""``bench/device_memory.py``: the peak device memory of a full-size 16-frame run, from meta shapes,
meets the consumer-card targets, and follows the decode chunk (the engine sizes it from free memory)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))


def test_chain_peaks_meet_the_card_targets():
    import device_memory as dm

    from blender_stchain.contracts.settings import preset

    rows = dm.table("chain", 16, preset("balanced"))
    peak, offload = max(r["peak"] for r in rows), max(r["peak_offload"] for r in rows)
    print(dm.markdown({"stages": {"chain": dm._rounded(rows), "actionmesh": []}}))
    assert 4.0 < peak <= 12.0 and 2.0 < offload <= 8.0 and offload < peak  # the targets (and not zero)
    by_stage = {r["stage"]: r for r in rows}  # stage I never shares the device with stage 0
    assert by_stage["window: stage-I steps + capture"]["weights"] < 0.7 * sum(
        dm.weights(n) for n in ("transformer", "image_encoder_dinov2", "dinov2", "denoiser", "vae")) / dm.GIB


@pytest.mark.slow
def test_the_json_line_of_both_methods():
    out = subprocess.run([sys.executable, "bench/device_memory.py", "--json"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert len(lines) == 1 and {"chain", "chain_offload", "actionmesh", "actionmesh_offload"} <= report.keys()
    print({k: v for k, v in report.items() if k != "stages"})
    assert report["chain"] <= 12.0 and report["chain_offload"] <= 8.0
    assert report["chain_offload"] < report["chain"] and report["actionmesh_offload"] < report["actionmesh"]
    for rows in report["stages"].values():  # the engine's reserve for activations besides the decoder covers them
        from blender_stchain.engine.backbone.parts import OTHER_ACTIVATIONS_GIB

        worst = max(r["activations"] for r in rows if "surface" not in r["stage"])
        assert worst <= max(OTHER_ACTIVATIONS_GIB.values())


def test_decoder_memory_follows_the_decode_chunk_as_the_engine_assumes():
    import device_memory as dm

    from blender_stchain.engine.backbone.parts import QUERY_BYTES

    dm.measure(lambda: dm.decoder_calls(15, 4096, 8192, 256))  # a first call also makes the model's lazy caches
    peaks = {c: dm.measure(lambda c=c: dm.decoder_calls(15, c, 8192, 256)) for c in (65_536, 262_144)}
    per_query = (peaks[262_144] - peaks[65_536]) / (262_144 - 65_536)
    print(peaks, per_query)
    assert peaks[262_144] > 3 * peaks[65_536]
    assert 0.9 < per_query / QUERY_BYTES < 1.1  # the engine's per-query bytes are the measured slope
