"""Stand-ins for what this machine lacks: GPU tools (``nvidia-smi``, ``rocminfo`` scripts first on
PATH), a GPU PyTorch (real wheel files whose ``torch`` runs the real CPU torch of this interpreter,
so the verification's kernels really run), and a package index (a local folder or a slow HTTP server
of those wheels, with their real sha256 in the lock)."""

import base64
import functools
import hashlib
import http.server
import importlib.util
import json
import os
import stat
import threading
import time
import zipfile
from pathlib import Path



def real_torch() -> Path:
    """This interpreter's torch package folder: found, not imported (the bpy tests stay torch-free). The
    Blender-only venvs of the 4.2 / 5.2 matrices have none: a stand-in runtime cannot be made there."""
    import pytest

    spec = importlib.util.find_spec("torch")
    if spec is None:
        pytest.skip("no torch in this interpreter: the stand-in GPU runtime wraps a real torch")
    return Path(spec.origin).parent


# what each stand-in torch does after (or instead of) loading the real one
TORCH_VARIANTS = {
    "good": "",
    # a DLL clash as Windows users meet it: the import itself fails
    "broken": "raise ImportError('DLL load failed while importing _C: The specified procedure could not be found')\n",
    # a miscompiled kernel: attention answers, but wrong
    "wrong": ("_f = _mod.nn.functional\n_sdpa = _f.scaled_dot_product_attention\n"
              "_f.scaled_dot_product_attention = lambda *a, **k: _sdpa(*a, **k) * 1.5\n"),
}


def torch_init(variant: str) -> str:
    head = "import importlib.util as _u, sys as _s\n"
    if variant == "broken":
        return head + TORCH_VARIANTS[variant]
    real = real_torch()
    return head + (
        f"_spec = _u.spec_from_file_location('torch', {str(real / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(real)!r}])\n"
        "_mod = _u.module_from_spec(_spec)\n_s.modules['torch'] = _mod\n_spec.loader.exec_module(_mod)\n"
        + TORCH_VARIANTS[variant])


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, name: str, version: str, files: dict, requires=()) -> Path:
    """A real wheel file (zip with METADATA, WHEEL and a RECORD of real digests) that pip installs."""
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {**files, f"{dist}/METADATA": metadata,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: stchain-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    encoded = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    record = "".join(f"{k},{_digest(v)},{len(v)}\n" for k, v in encoded.items()) + f"{dist}/RECORD,,\n"
    path = Path(folder) / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in {**encoded, f"{dist}/RECORD": record.encode()}.items():
            z.writestr(k, v)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lock_text(platform: str, python: str, wheels: dict, wrong: set = frozenset()) -> str:
    """A lock section pinning ``wheels`` (spec -> wheel file); specs in ``wrong`` get another hash."""
    lines = [f"[{platform} {python}]"]
    for spec, wheel in wheels.items():
        digest = sha256(wheel) if spec not in wrong else hashlib.sha256(b"another file").hexdigest()
        lines.append(f"{spec} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def build_entry(name: str, index: str, **extra) -> dict:
    return {"name": name, "vendor": "nvidia", "torch": "2.13.0", "cuda": "13.0", "device": "cpu",
            "min_driver": "525", "download_bytes": 4_000_000, "unpacked_bytes": 8_000_000,
            "index": {"linux-x64": index}, **extra}


def write_table(folder: Path, builds: list[dict]) -> Path:
    path = Path(folder) / "runtimes.json"
    path.write_text(json.dumps({"builds": builds}))
    return path


def tool(folder: Path, name: str, stdout: str, code: int = 0) -> Path:
    """An executable ``name`` in ``folder`` that prints ``stdout`` (a stand-in for a vendor tool)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\ncat <<'END'\n{stdout}\nEND\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def nvidia_smi(folder: Path, driver: str, name: str = "NVIDIA GeForce RTX 4090", cc: str = "8.9") -> Path:
    return tool(folder, "nvidia-smi", f"{name}, {driver}, {cc}, 24564")


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the wheel folder at ``rate`` bytes per second (a download long enough to cancel)."""

    rate = 200_000

    def copyfile(self, source, outputfile):
        while chunk := source.read(self.rate // 10):
            outputfile.write(chunk)
            time.sleep(0.1)

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # pip hanging up mid-download (the cancel) is the point, not an error


def serve(folder: Path):
    handler = functools.partial(SlowHandler, directory=str(folder))
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def incompressible(n: int) -> bytes:
    return os.urandom(n)
