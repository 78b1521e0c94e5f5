"""scripts/lock_runtime.py against a local simple index (the format of PyTorch's own index): the
dependency closure with markers and extras, sha256 from the index page, sizes; an index out of
reach gives a placeholder the installer refuses."""

import sys
import zipfile

from blender_stchain.runtime.install import PLACEHOLDER
from tests.conftest import REPO
from tests.runtime import standins

sys.path.insert(0, str(REPO / "scripts"))
import lock_runtime  # noqa: E402

sys.path.remove(str(REPO / "scripts"))


def simple_index(base):
    files = base / "files"
    files.mkdir(parents=True)
    torch = standins.make_wheel(files, "torch", "2.13.0+cu128", {"torch/__init__.py": "X = 1\n"}, requires=[
        "standin-dep>=1.0", "numpy", "standin-win; sys_platform == 'win32'", "standin-extra[fast]==2.0",
        "setuptools>=70"])
    dep = standins.make_wheel(files, "standin_dep", "1.1", {"standin_dep/__init__.py": ""})
    old = standins.make_wheel(files, "standin_dep", "0.9", {"standin_dep/__init__.py": ""})
    extra = standins.make_wheel(files, "standin_extra", "2.0", {"standin_extra/__init__.py": ""},
                                requires=["standin-fast==3.0; extra == 'fast'", "standin-slow; extra == 'slow'"])
    fast = standins.make_wheel(files, "standin_fast", "3.0", {"standin_fast/__init__.py": "A = 'x' * 100\n" * 50})
    projects = {"torch": [torch], "standin-dep": [dep, old], "standin-extra": [extra], "standin-fast": [fast]}
    for name, wheels in projects.items():
        (base / "whl" / "cu128" / name).mkdir(parents=True)  # as PyTorch's index: whl/<build>/<project>/
        links = "".join(f'<a href="../../../files/{w.name}#sha256={standins.sha256(w)}">{w.name}</a>\n' for w in wheels)
        (base / "whl" / "cu128" / name / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return {w.name: w for ws in projects.values() for w in ws}


def test_closure_from_a_simple_index(tmp_path):
    wheels = simple_index(tmp_path)
    server, url = standins.serve(tmp_path)
    try:
        build = {"name": "cu128", "torch": "2.13.0", "index": {"linux-x64": url + "whl/cu128"}}
        lines, size, unpacked = lock_runtime.section(build, "linux-x64", "cp311", measure=True)
    finally:
        server.shutdown()
    by_name = {w.name.split("-")[0]: w for w in wheels.values() if "0.9" not in w.name}
    assert [line.split(" ")[0] for line in lines] == [
        "torch==2.13.0+cu128", "standin-dep==1.1", "standin-extra==2.0", "standin-fast==3.0"]  # no numpy, setuptools,
    for line, name in zip(lines, ["torch", "standin_dep", "standin_extra", "standin_fast"]):  # win-only or slow
        assert line.endswith(f"--hash=sha256:{standins.sha256(by_name[name])}")
    assert size == sum(w.stat().st_size for w in by_name.values())
    assert unpacked == sum(i.file_size for w in by_name.values() for i in zipfile.ZipFile(w).infolist())


def test_an_unreachable_index_gives_a_refused_placeholder():
    build = {"name": "rocm", "torch": "2.13.0", "index": {"linux-x64": "http://127.0.0.1:9/whl/rocm7.1"}}
    lines, size, _ = lock_runtime.section(build, "linux-x64", "cp311", measure=False)
    assert lines[0].startswith(f"torch==2.13.0+rocm7.1 --hash=sha256:{PLACEHOLDER}") and size == 0
