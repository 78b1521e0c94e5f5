"""Run by the worker's interpreter with the worker's path (the installed tier's import audit): imports every
module named in argv[2] (JSON) of the package argv[1], then lists every third-party name any module imports,
at module level or inside a function, with where it resolves (None: nowhere). Prints ``AUDIT {json}``."""

import ast
import importlib
import importlib.util
import json
import sys
from pathlib import Path

package, modules = sys.argv[1], json.loads(sys.argv[2])
failed = {}
for name in modules:
    full = package if not name else f"{package}.{name}"
    try:
        importlib.import_module(full)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - every failure is reported, the test names them
        failed[name] = f"{type(e).__name__}: {e}"
root = Path(importlib.util.find_spec(package).origin).parent
wanted: dict[str, list[str]] = {}
for path in sorted(root.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        for top in tops:
            if top not in sys.stdlib_module_names and top != package:
                wanted.setdefault(top, []).append(str(path.relative_to(root)))
where = {}
for top in sorted(wanted):
    spec = importlib.util.find_spec(top)
    where[top] = {"origin": None if spec is None else str(spec.origin or list(spec.submodule_search_locations)[0]),
                  "used_by": sorted(set(wanted[top]))}
print("AUDIT " + json.dumps({"imported": len(modules) - len(failed), "failed": failed, "third_party": where}))
