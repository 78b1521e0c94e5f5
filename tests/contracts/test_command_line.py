"""The shared command line (contracts.options), typed events (contracts.events), the measured ETA, the
settings checks and what a person at a terminal reads. Torch-free and fast."""

import io
import json

import pytest

from blender_stchain import cli, cli_weights
from blender_stchain.contracts import events, progress
from blender_stchain.contracts.errors import UsageError
from blender_stchain.contracts.options import JOB_OPTIONS, parse_job
from blender_stchain.contracts.settings import Settings, check, preset
from blender_stchain.contracts.terminal import Printer, bar_line


@pytest.mark.parametrize("record", [
    events.Progress("windows", 0.5, "window 2/4", 12.5, 1, 4), events.WarningEvent("careful"), events.Log("plain"),
    events.Done("/x/result.safetensors"), events.Error("broken", cancelled=True), events.Cancelled(),
])
def test_events_round_trip(record):
    line = record.to_json()
    assert json.loads(line)[events.PROTOCOL_KEY] == record.kind
    back = events.from_json(line)
    assert back == record and type(back) is type(record)
    assert back["event"] == record.kind and back.get("nope", 7) == 7  # reads like the wire dict
    assert {**back} == json.loads(line) and dict(back) == back.to_dict()


def test_unknown_lines_become_log_events():
    assert events.from_json("render | Saved: x.png") == events.Log("render | Saved: x.png")
    assert events.from_json('{"stchain": "progress"}').kind == "log"  # the old key is not the protocol
    assert events.from_json('{"event": "done"}').kind == "log"  # a done without its result is malformed
    assert events.from_json("   ") is None


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_eta_is_measured_and_honest_from_the_first_steps():
    """Stages cost what the plan says per unit: after the first measured anchor step the ETA equals the
    true time left; during loading there is no guess at all; it only goes down at a steady pace."""
    clock, seen = Clock(), []
    rep = progress.Reporter(seen.append, None, {"load": 1, "anchor": 4, "windows": 8}, clock=clock)
    rep.progress("load", 0)
    clock.t = 3.0  # imports and reading: says nothing about the model's pace
    rep.progress("load", 1)
    assert [e.eta_s for e in seen] == [None, None]
    rep.progress("anchor", 0, 10)  # anchor: 10 steps of 0.4 s = 4 s; windows: 8 units at 1 s = 8 s
    etas = []
    for step in range(1, 11):
        clock.t += 0.4
        rep.progress("anchor", step, 10)
        etas.append(seen[-1].eta_s)
    assert etas[0] == pytest.approx(0.4 * 9 + 8.0, abs=0.1)
    rep.resize("windows", 8)
    for w in range(1, 5):
        clock.t += 2.0
        rep.progress("windows", w, 4)
        etas.append(seen[-1].eta_s)
    assert all(a >= b for a, b in zip(etas, etas[1:])) and etas[-1] == 0.0
    assert seen[-1].fraction == 1.0


def test_eta_of_a_stage_without_steps_uses_the_measured_pace():
    """A stage that reports no steps (the anchor's surface extraction) is estimated from the pace
    measured so far, and counts down while it runs."""
    clock, seen = Clock(), []
    rep = progress.Reporter(seen.append, None, {"load": 1, "anchor": 4, "surface": 2, "windows": 8}, clock=clock)
    rep.progress("load", 1)
    for step in range(5):  # 4 anchor units in 4 s: 1 s per unit
        rep.progress("anchor", step, 4)
        clock.t += 1.0 if step < 4 else 0.0
    rep.progress("surface", 0)
    assert seen[-1].eta_s == pytest.approx(10.0)  # (2 + 8) units at 1 s
    clock.t += 1.5
    rep.progress("surface", 0)
    assert seen[-1].eta_s == pytest.approx(8.5)
    clock.t += 20.0  # far past the estimate: "estimating" again, never a false "0 s left"
    rep.progress("surface", 0)
    assert seen[-1].eta_s is None


def test_cancel_raises_from_progress():
    rep = progress.Reporter(None, lambda: True, {"load": 1})
    with pytest.raises(Exception, match="cancelled"):
        rep.progress("load", 0)


@pytest.mark.parametrize("name,value,message", [
    ("top_k", "abc", "setting top_k must be a whole number, got 'abc'"),
    ("top_k", 2.5, "setting top_k must be a whole number, got 2.5"),
    ("top_k", True, "setting top_k must be a whole number, got True"),
    ("top_k", 0, "setting top_k must be between 1 and 1024, got 0"),
    ("tau", float("nan"), "setting tau must be a number, got nan"),
    ("min_confidence", 2, "setting min_confidence must be between 0 and 1, got 2"),
    ("camera_mode", "orbit", "setting camera_mode must be one of object_moves, camera_moves, got 'orbit'"),
    ("capture_layers", 3, "setting capture_layers must be a list of whole numbers, e.g. [0,1,2], got 3"),
    ("window_size", None, "setting window_size cannot be empty"),
])
def test_settings_are_type_and_range_checked(name, value, message):
    with pytest.raises(ValueError) as info:
        check(name, value)
    assert str(info.value) == message
    with pytest.raises(ValueError, match=name):
        preset("balanced", **{name: value})


def test_every_setting_has_a_range_and_every_preset_fits():
    from dataclasses import fields

    from blender_stchain.contracts.settings import PRESETS, RANGES

    assert set(RANGES) == {f.name for f in fields(Settings)}
    for name in PRESETS:
        for f in fields(Settings):
            check(f.name, getattr(preset(name), f.name))
    check("camera_focal_px", None) or check("capture_layers", [0, 2]) or check("tau", 1)  # valid: no error


def test_run_refuses_blender_only_options(tmp_path):
    base = ["--footage", str(tmp_path), "--out", "r.safetensors"]
    with pytest.raises(UsageError, match="--write-mode needs Blender"):
        parse_job([*base, "--write-mode", "pc2"], "run", blender=False)
    with pytest.raises(UsageError, match="--mask-source luma needs Blender"):
        parse_job([*base, "--mask-source", "luma"], "run", blender=False)
    a = parse_job([*base, "--mask-source", "luma", "--write-mode", "pc2", "--set", "top_k=4", "--frames", "2:9"],
                  "stchain", blender=True)
    assert (a.mask_source, a.write_mode, a.job.settings, a.job.frames) == ("luma", "pc2", {"top_k": 4}, (2, 9))


def test_one_table_defines_every_option():
    flags = [o.flag for o in JOB_OPTIONS]
    assert len(flags) == len(set(flags))
    help_text = io.StringIO()
    from blender_stchain.contracts.options import job_parser

    job_parser("x").print_help(help_text)
    assert all(flag in help_text.getvalue() for flag in flags)


def test_run_usage_error_is_one_line(capsys):
    assert cli.main(["run", "--footage", "f"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: the following arguments are required: --out (see --help)"]


def test_terminal_shows_a_bar_and_json_when_asked():
    tty = io.StringIO()
    tty.isatty = lambda: True
    p = Printer(stream=tty)
    p(events.Progress("windows", 0.5, "window 2/4", 125.0))
    p(events.WarningEvent("camera: few matches"))
    p(events.Done("/r.safetensors"))
    text = tty.getvalue()
    assert "[############............]  50% windows: window 2/4, 2 min 05 s left" in text
    assert "\nwarning: camera: few matches\nresult: /r.safetensors\n" in text and "{" not in text
    pipe = io.StringIO()
    Printer(stream=pipe)(events.Progress("anchor", 0.1, "step 1/25"))
    assert json.loads(pipe.getvalue())["event"] == "progress"  # not a terminal: JSON lines
    assert bar_line(events.Progress("load", 0.0)).endswith("load, estimating time left")


def test_weights_check_says_what_is_true(tmp_path, capsys):
    assert cli_weights.main(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    print(out, err)
    fit = [line for line in out.splitlines() if "parts fit together" in line]
    assert fit and fit[0].split()[0] == "missing" and "not checked: 6 of 6 model parts missing" in fit[0]
    assert err.strip().startswith("error: 11 missing of 15 checks at") and "weights download" in err
    assert cli_weights.main(["check", "--weights", str(tmp_path)]) == 1  # the job option works too (Check Weights)
    assert cli_weights.main(["check", "--bogus"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "error: unrecognized arguments: --bogus (see --help)"


def _python_without_bpy():
    """The interpreter this venv was made from, without user site-packages: numpy, but no bpy, as a plain
    Python install has."""
    import subprocess
    import sys

    base = getattr(sys, "_base_executable", sys.executable)
    probe = subprocess.run([base, "-s", "-c", "import numpy; import bpy"], capture_output=True, text=True)
    if "No module named 'bpy'" not in probe.stderr:
        pytest.skip(f"{base} has bpy, or lacks numpy: {probe.stderr.strip()[-200:]}")
    return base


def test_a_blend_without_the_bpy_module_is_one_line_and_exit_1(tmp_path):
    import subprocess
    from pathlib import Path

    repo = Path(cli.__file__).resolve().parents[1]
    (tmp_path / "frames").mkdir()
    code = (f"import sys; sys.path.insert(0, {str(repo)!r}); from blender_stchain.cli import main; "
            f"sys.exit(main(['--footage', {str(tmp_path / 'frames')!r}, '--out', {str(tmp_path / 'x.blend')!r}]))")
    p = subprocess.run([_python_without_bpy(), "-s", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: writing a .blend needs Blender's bpy module"), p.stderr
    assert "pip install bpy==" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "x.blend").exists()


def _flags(parser) -> dict:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_every_command_that_loads_weights_takes_the_shared_options_from_the_one_table():
    from blender_stchain import cli_masks
    from blender_stchain.batch.cli import parser as batch_parser
    from blender_stchain.contracts.options import WEIGHT_OPTIONS, job_parser
    from blender_stchain.evaluation.cli import parser as eval_parser

    from blender_stchain.contracts.options import JOB_SETTINGS

    table = {o.flag: o for o in JOB_SETTINGS}  # a job's values; --footage and --out mean what each command says
    parsers = {"run": job_parser("run"), "masks": cli_masks._parser(), "batch": batch_parser(), "eval": eval_parser()}
    for name, parser in parsers.items():
        flags = _flags(parser)
        for flag in WEIGHT_OPTIONS:
            assert flag in flags, f"{name} lacks {flag}"
        for flag, action in flags.items():  # any option a command shares with the table is the table's
            if flag in table and not (name == "eval" and flag == "--method"):  # eval's --method adds "both"
                o = table[flag]
                assert (action.help, action.default) == (o.help, o.default if o.action != "append" else []), \
                    f"{name} {flag} differs from the table"
    assert "--preset" in _flags(parsers["eval"]) and "--precision" in _flags(parsers["eval"])
