"""``weights download`` against a real HTTP server on 127.0.0.1 serving a random tiny weights tree.

The server behaves like huggingface.co: ``/<repo>/resolve/main/<file>`` answers 302 to a CDN path and
states the file's sha256 in ``X-Linked-Etag``; the CDN honours Range requests. Faults are injected per
file: a connection cut mid-transfer, a wrong advertised hash, Range ignored, 404.
"""

import hashlib
import http.server
import json
import re
import threading

import pytest

from blender_stchain import cli_weights
from blender_stchain.contracts.errors import Cancelled, WeightsError
from blender_stchain.engine import weights
from blender_stchain.engine.weights.fetch import MANIFEST, download
from blender_stchain.engine.weights.random_checkpoints import make_random
from blender_stchain.engine.segment import catalogue as sam2


class Repo(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files  # "/<repo id>/resolve/main/<rel>" -> bytes
        self.cut = {}  # resolve path -> bytes the CDN sends before dropping the connection (once)
        self.bad_hash, self.ignore_range, self.log = set(), set(), []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv: Repo = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/cdn/"):
            return self.serve(self.path[len("/cdn"):])
        body = srv.files.get(self.path)
        if body is None:
            return self.send_error(404)
        sha = hashlib.sha256(body).hexdigest()
        self.send_response(302)
        self.send_header("Location", "/cdn" + self.path)
        self.send_header("X-Linked-Etag", f'"{"0" * 64 if self.path in srv.bad_hash else sha}"')
        self.send_header("X-Linked-Size", str(len(body)))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def serve(self, path):
        srv: Repo = self.server
        body = srv.files[path]
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        start = int(m.group(1)) if m and path not in srv.ignore_range else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"cdn-etag"')
        self.end_headers()
        chunk = body[start:]
        if path in srv.cut:
            chunk = chunk[: srv.cut.pop(path)]
            self.close_connection = True
        self.wfile.write(chunk)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from blender_stchain.engine.segment.model import write_random

    root = make_random(tmp_path_factory.mktemp("src") / "root", "tiny", seed=2)
    write_random(root, "tiny", seed=2)  # the default download includes the default SAM 2.1 size
    return root


@pytest.fixture
def server(source):
    files = {}
    for repo_dir, repo_id in weights.REPOS.items():
        for rel in weights.repo_files(repo_dir):
            files[f"/{repo_id}/resolve/main/{rel}"] = (source / repo_dir / rel).read_bytes()
    for rel in sam2.FILES:  # the default download also fetches the default SAM 2.1 size
        files[f"/{sam2.REPOS[sam2.DEFAULT_MODEL]}/resolve/main/{rel}"] = (source / sam2.DEFAULT_MODEL / rel).read_bytes()
    srv = Repo(files)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


DIT = "TripoSG/transformer/diffusion_pytorch_model.safetensors"
DIT_URL = "/VAST-AI/TripoSG/resolve/main/transformer/diffusion_pytorch_model.safetensors"


def test_download_all_parts_verified_and_loadable(server, source, tmp_path):
    events = []
    files = download(tmp_path, None, lambda f, d, t: events.append((f, d, t)), base_url=server.url)
    n = sum(len(weights.repo_files(r)) for r in weights.REPOS) + len(sam2.FILES)
    assert len(files) == n and events and all(t is not None and d <= t for _, d, t in events)
    report = weights.check(tmp_path)
    assert report.ok and report.is_random
    for repo_dir in weights.REPOS:
        manifest = json.loads((tmp_path / repo_dir / MANIFEST).read_text())
        for rel, entry in manifest.items():
            data = (tmp_path / repo_dir / rel).read_bytes()
            assert data == (source / repo_dir / rel).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
            assert entry["verified_against_server"]
    weights.load_component(tmp_path, "denoiser")
    assert download(tmp_path, ["triposg"], base_url=server.url) == []  # finished files are not fetched again
    assert not list(tmp_path.rglob("*.part"))


def test_resume_after_interrupted_transfer(server, source, tmp_path):
    total = len(server.files[DIT_URL])
    server.cut[DIT_URL] = total // 3
    with pytest.raises(WeightsError, match="(interrupted|stopped at).*run the same command again to resume"):
        download(tmp_path, ["TripoSG"], base_url=server.url)
    part = tmp_path / (DIT + ".part")
    assert part.stat().st_size == total // 3 and not (tmp_path / DIT).exists()
    download(tmp_path, ["TripoSG"], base_url=server.url)
    assert (tmp_path / DIT).read_bytes() == (source / DIT).read_bytes() and not part.exists()
    ranged = [r for p, r in server.log if p == "/cdn" + DIT_URL and r]
    print(f"resumed with {ranged} after {total // 3} of {total} bytes")
    assert ranged == [f"bytes={total // 3}-"]


def test_server_ignoring_range_restarts_cleanly(server, source, tmp_path):
    server.cut[DIT_URL] = 1000
    server.ignore_range.add(DIT_URL)
    with pytest.raises(WeightsError):
        download(tmp_path, ["TripoSG"], base_url=server.url)
    download(tmp_path, ["TripoSG"], base_url=server.url)
    assert (tmp_path / DIT).read_bytes() == (source / DIT).read_bytes()


def test_checksum_mismatch_is_rejected(server, tmp_path):
    server.bad_hash.add(DIT_URL)
    with pytest.raises(WeightsError, match="corrupt .*sha256"):
        download(tmp_path, ["TripoSG"], base_url=server.url)
    assert not (tmp_path / DIT).exists() and not (tmp_path / (DIT + ".part")).exists()
    assert DIT.split("/", 1)[1] not in json.loads((tmp_path / "TripoSG" / MANIFEST).read_text())


def test_cancel_keeps_partial_file_for_resume(server, source, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled, match="resume"):
        download(tmp_path, ["ActionMesh"], cancel=cancel, base_url=server.url)
    assert not (tmp_path / "ActionMesh/denoiser/model.safetensors").exists()
    download(tmp_path, ["ActionMesh"], base_url=server.url)
    assert weights.check(tmp_path).parts[3].state == "present"


def test_http_errors_and_offline_give_one_line(server, tmp_path):
    del server.files["/facebook/dinov2-large/resolve/main/model.safetensors"]
    with pytest.raises(WeightsError, match="HTTP 404") as info:
        download(tmp_path, ["dinov2"], base_url=server.url)
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="cannot reach 127.0.0.1:9 .*check the network") as info:
        download(tmp_path, ["dinov2"], base_url="http://127.0.0.1:9", timeout=5)  # closed port: no network
    assert "interrupted" not in str(info.value) and "resume" not in str(info.value)
    with pytest.raises(WeightsError, match="unknown weights part"):
        download(tmp_path, ["rmbg"], base_url=server.url)


def test_cli_download(server, tmp_path, capsys):
    assert cli_weights.main(["download", str(tmp_path), "--parts", "dinov2", "--base-url", server.url]) == 0
    assert "non-commercial" in capsys.readouterr().out
    assert (tmp_path / "dinov2-large/model.safetensors").is_file()
