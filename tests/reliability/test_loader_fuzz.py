"""Property-based fuzzing of the safetensors loader with corrupt and lying headers.

Every generated file must either load with tensors exactly as its header describes, or raise
``WeightsError``; nothing else may escape, nothing may hang (per-case deadline), and nothing may allocate
from an unchecked header (peak RSS growth is bounded over the whole run).
"""

import json
import resource
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blender_stchain.contracts.errors import WeightsError
from blender_stchain.contracts.safetensors_io import DTYPE_SIZES
from blender_stchain.engine.weights.tensors import load_tensors
from tests.reliability.helpers import LOADER_CASES

CASES = 400
DTYPES = ["F32", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F64", "I8"]
HUGE = st.sampled_from([2**31, 2**32 + 7, 2**40, 2**62, 2**63 - 1, 2**64 - 1, 10**30])
ANY_INT = st.one_of(st.integers(-5, 4096), HUGE, st.integers(-(2**70), 2**70))
JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=5), ANY_INT,
                 st.lists(st.integers(-3, 9), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def valid_file(draw):
    """A consistent small safetensors file: header dict and data bytes."""
    n = draw(st.integers(0, 4))
    header, data = {}, b""
    for i in range(n):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        size = DTYPE_SIZES[dtype] * int(np.prod(shape, dtype=np.int64))
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += draw(st.binary(min_size=size, max_size=size))
    if draw(st.booleans()):
        header["__metadata__"] = {"format": "pt"}
    return header, data


def mutate_header(draw, header: dict) -> dict:
    names = [k for k in header if k != "__metadata__"]
    kind = draw(st.sampled_from(["offsets", "shape", "dtype", "entry", "extra", "metadata", "swap", "none"]))
    if kind == "extra" or not names:
        header[draw(st.text(max_size=6))] = draw(st.one_of(JUNK, st.fixed_dictionaries(
            {"dtype": st.sampled_from(DTYPES), "shape": st.lists(ANY_INT, max_size=3),
             "data_offsets": st.lists(ANY_INT, min_size=2, max_size=2)})))
        return header
    name = draw(st.sampled_from(names))
    entry = header[name]
    if kind == "offsets":
        entry["data_offsets"] = draw(st.one_of(st.lists(ANY_INT, min_size=0, max_size=3), JUNK))
    elif kind == "shape":
        entry["shape"] = draw(st.one_of(st.lists(ANY_INT, max_size=4), st.lists(HUGE, min_size=1, max_size=20), JUNK))
    elif kind == "dtype":
        entry["dtype"] = draw(st.one_of(st.text(max_size=6), JUNK))
    elif kind == "entry":
        header[name] = draw(JUNK)
    elif kind == "metadata":
        header["__metadata__"] = draw(JUNK)
    elif kind == "swap" and len(names) > 1:
        other = header[draw(st.sampled_from(names))]
        entry["data_offsets"], other["data_offsets"] = other["data_offsets"], entry["data_offsets"]
    return header


@st.composite
def corrupt_file(draw):
    header, data = draw(valid_file())
    header = mutate_header(draw, header) if draw(st.booleans()) else header
    raw = draw(st.one_of(st.just(json.dumps(header).encode()), st.binary(max_size=64),
                         st.just(json.dumps(header).encode()[: draw(st.integers(0, 40))])))
    length = len(raw)
    how = draw(st.sampled_from(["keep", "lie_length", "truncate", "append", "keep"]))
    if how == "lie_length":
        length = draw(st.one_of(HUGE, st.integers(0, len(raw) + 64)))
    blob = struct.pack("<Q", length % 2**64) + raw + data
    if how == "truncate":
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif how == "append":
        blob += draw(st.binary(min_size=1, max_size=32))
    return blob


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def check_one(path, blob: bytes, counter: dict) -> None:
    path.write_bytes(blob)
    counter["cases"] += 1
    try:
        tensors = load_tensors(path)
    except WeightsError as e:
        assert str(e) and "\n" not in str(e)
        counter["rejected"] += 1
        return
    counter["loaded"] += 1
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)
    assert set(tensors) == set(header)
    for name, t in tensors.items():
        assert list(t.shape) == header[name]["shape"]
        begin, end = header[name]["data_offsets"]
        assert t.numel() * t.element_size() == end - begin


def test_loader_never_crashes_hangs_or_overallocates(tmp_path):
    counter = {"cases": 0, "loaded": 0, "rejected": 0}
    check_one(tmp_path / "warm.safetensors", b"", counter)  # imports torch before the RSS baseline
    rss0 = _peak_rss_mib()

    @settings(max_examples=CASES, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(blob=corrupt_file())
    def fuzz(blob):
        check_one(tmp_path / "fuzz.safetensors", blob, counter)

    fuzz()
    grew = _peak_rss_mib() - rss0
    print(f"loader fuzz: {counter['cases']} cases, {counter['loaded']} loaded, {counter['rejected']} rejected "
          f"with WeightsError, 0 other exceptions; peak RSS growth {grew:.0f} MiB")
    LOADER_CASES.append(counter["cases"])
    assert counter["cases"] >= 300
    assert grew < 256  # no header claiming 2**31..2**64 bytes ever turned into an allocation


def test_a_dtype_that_is_not_a_string_is_refused(tmp_path):
    """Found by the fuzzer: a list as dtype raised TypeError (unhashable) instead of WeightsError."""
    header = b'{"t0": {"dtype": [], "shape": [], "data_offsets": [0, 4]}}'
    path = tmp_path / "listdtype.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 4)
    with pytest.raises(WeightsError, match=r"tensor 't0' has unknown dtype \[\]"):
        load_tensors(path)
