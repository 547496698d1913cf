"""The plugin contract from the command line: a misspelled hook and a blocked default executor are
one-line usage errors, never a traceback and never silence."""

from __future__ import annotations


def test_a_misspelled_hook_is_a_one_line_error_naming_it(run_cli, tasks, tmp_path, home):
    (tmp_path / "typo_plugin.py").write_text(
        "from parallelr import hookimpl\n\n@hookimpl\ndef parallelr_task_finsh(run, result):\n    pass\n"
    )

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-p", "typo_plugin"],
                     env={"PYTHONPATH": str(tmp_path)})

    assert result.returncode == 2, result.output
    assert result.stderr == (
        "parallelr: error: plugin typo_plugin implements an unknown hook parallelr_task_finsh "
        "(did you mean parallelr_task_finish?)\n"
    )
    assert not (home / "parallelr" / "logs").exists()


def test_blocking_the_default_executor_without_choosing_one_is_a_clear_error(run_cli, tasks, home):
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-p", "no:thread"])

    assert result.returncode == 2, result.output
    assert result.stderr == (
        "parallelr: error: the default executor 'thread' is not loaded (blocked with -p no:thread?): "
        "choose one with --executor NAME; loaded executors: dask, process\n"
    )
    assert not (home / "parallelr" / "logs").exists()


def test_blocking_the_default_executor_and_choosing_another_runs(run_cli, run_files, tasks):
    argv = ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-p", "no:thread", "--executor", "process"]
    result = run_cli(argv)

    assert result.returncode == 0, result.output
    assert [row["status"] for row in run_files().rows] == ["SUCCESS"]
