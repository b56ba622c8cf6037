"""The report's stage runner: reuse with the same config, refusal on other settings, interrupted stages,
resumed training, and the progress display and log."""

from __future__ import annotations

import json

import pytest

from fundiff.errors import UserError
from fundiff.report import runner
from fundiff.report.profiles import PROFILES, get_profile
from fundiff.report.runner import Stage, guard_report_dir, run_stages


def _stage(tmp_path, name="s1", config=None, calls=None, fail=None):
    calls = calls if calls is not None else []

    def run(out):
        calls.append(name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "a.txt").write_text("x")
        if fail is not None:
            raise fail
        return {"value": len(calls)}

    return Stage(name, f"stage {name}", config or {"k": 1}, run, tmp_path / "out" / name), calls


def test_a_finished_stage_is_reused_and_its_result_kept(tmp_path):
    s, calls = _stage(tmp_path)
    first = run_stages(tmp_path, [s], {})
    second = run_stages(tmp_path, [s], {})
    assert calls == ["s1"]
    assert not first[0].reused and second[0].reused
    assert second[0].result == first[0].result == {"value": 1}


def test_a_stage_with_other_settings_is_refused_then_rebuilt_with_force(tmp_path):
    s, calls = _stage(tmp_path)
    run_stages(tmp_path, [s], {})
    other, _ = _stage(tmp_path, config={"k": 2}, calls=calls)
    with pytest.raises(UserError, match="other settings"):
        guard_report_dir(tmp_path, [other], force=False)
    guard_report_dir(tmp_path, [other], force=True)
    run_stages(tmp_path, [other], {})
    assert calls == ["s1", "s1"]


def test_a_non_empty_folder_that_is_no_report_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    s, _ = _stage(tmp_path)
    with pytest.raises(UserError, match="holds no fundiff report"):
        guard_report_dir(tmp_path, [s], force=False)
    guard_report_dir(tmp_path / "new", [s], force=False)  # a new or empty folder is fine


def test_an_interrupted_stage_leaves_no_marker_and_runs_again_from_clean(tmp_path):
    s, calls = _stage(tmp_path, fail=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_stages(tmp_path, [s], {})
    assert runner.read_marker(tmp_path, "s1") is None
    good, _ = _stage(tmp_path, calls=calls)
    (good.out / "stale.txt").write_text("half-written")
    run_stages(tmp_path, [good], {})
    assert not (good.out / "stale.txt").exists()  # a stage that does not resume starts from an empty folder
    assert runner.read_marker(tmp_path, "s1")["result"] == {"value": 2}


def test_a_failed_optional_stage_is_not_marked_done(tmp_path):
    s = Stage("df", "optional", {}, lambda out: {"status": "failed", "reason": "no weights"}, tmp_path / "df")
    res = run_stages(tmp_path, [s], {})
    assert res[0].result["reason"] == "no weights"
    assert runner.read_marker(tmp_path, "df") is None


def test_progress_lines_count_stages_and_estimate_time_left(tmp_path, capsys):
    stages = [_stage(tmp_path, name=n)[0] for n in ("a", "b")]
    run_stages(tmp_path, stages, {"a": 10.0, "b": 20.0})
    err = capsys.readouterr().err
    assert "[1/2] 0:00:00 elapsed, about 0:00:30 left: stage a" in err
    assert "[2/2]" in err and "all 2 stages finished" in err
    log = (tmp_path / "report.log").read_text()
    assert "[1/2]" in log and "done in" in log


def test_stage_prints_go_to_the_log_not_the_terminal(tmp_path, capsys):
    s = Stage("p", "prints", {}, lambda out: print("inner detail") or {}, tmp_path / "p")
    run_stages(tmp_path, [s], {})
    assert "inner detail" not in capsys.readouterr().out
    assert "inner detail" in (tmp_path / "report.log").read_text()


def test_markers_are_json_with_config_result_and_seconds(tmp_path):
    s, _ = _stage(tmp_path)
    run_stages(tmp_path, [s], {})
    m = json.loads(runner.marker(tmp_path, "s1").read_text())
    assert m["config"] == {"k": 1} and m["result"] == {"value": 1} and m["seconds"] >= 0


def test_profiles_cover_every_run_the_reports_show():
    names = {"denoiser", "denoiser-pure-noise", "time-ddpm", "class-ddpm", "time-flow", "class-flow",
             "class-flow-constant-lr", "class-flow-constant-lr-3e-3"}
    for p in PROFILES.values():
        assert {r.name for r in p.runs} == names
    spec = get_profile("spec")
    assert all(r.recipe == "spec" for r in spec.runs)
    assert dict(spec.run("class-flow-constant-lr-3e-3").overrides) == {"epochs": 15, "lr": 3e-3,
                                                                        "lr_schedule": "constant"}
    with pytest.raises(UserError, match="unknown profile"):
        get_profile("fast")


def test_learning_rate_section_compares_exponential_with_constant_in_every_profile():
    """The default recipe's lr is cosine; the report's class flow run keeps the spec's exponential decay, so that the
    learning-rate section compares what report 004 compared."""
    from fundiff.report.estimate import recipe_of

    for p in PROFILES.values():
        schedules = [recipe_of(p.run(n)).lr_schedule for n in ("class-flow", "class-flow-constant-lr",
                                                                "class-flow-constant-lr-3e-3")]
        assert schedules == ["exponential", "constant", "constant"], p.name


def test_time_estimate_does_not_swing_on_short_first_stages(tmp_path):
    """A 14-minute profile whose first stage (estimated 2 s) took 20 s must not read as hours left."""
    from fundiff.report.runner import Progress

    estimates = [2.0] + [40.0] * 21  # 842 s in all
    p = Progress(estimates, tmp_path / "log")
    p.finish(0, 20.0, reused=False)
    assert p.left(1) < 2 * sum(estimates[1:])
    for k in range(1, 11):  # then the machine runs twice as slow as the profile, steadily
        p.finish(k, 80.0, reused=False)
    assert 1.5 < p.speed() <= 2.1
    assert Progress(estimates, tmp_path / "log", done_estimate=10.0, done_seconds=1e6).speed() == 3.0  # clamped
