"""Start-up of commands that need no MLflow: only what the command uses is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# rich help formatting (typer.rich_utils pulls rich.markdown, pygments, rich.traceback) cost
# 1.3 of the 3 s `botfilter --help` took; the data stack is for the commands that use it.
HEAVY = ("typer.rich_utils", "rich.markdown", "pandas", "pyarrow", "mlflow", "lightgbm", "numba")


def _modules_after(*argv: str) -> set[str]:
    code = (
        "import json, sys\n"
        f"sys.argv = ['botfilter', *{list(argv)!r}]\n"
        "from botfilter.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_nothing_heavy():
    for argv in (
        ["--help"],
        ["settings", "--help"],
        ["score", "--help"],
        ["validate", "--help"],
        ["promote", "--help"],
    ):
        loaded = _modules_after(*argv)
        assert "botfilter.cli" in loaded
        assert not [m for m in HEAVY if m in loaded], argv


def test_usage_errors_are_one_plain_line():
    done = subprocess.run(
        [sys.executable, "-c", "from botfilter.cli import main; main()", "score", "--bogus"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "No such option: --bogus" in done.stderr
    assert "╭" not in done.stderr  # no rich box drawing


def test_commands_without_a_model_import_neither_mlflow_nor_lightgbm(tmp_path):
    """`metrics show` and `settings set` read the store only: MLflow and LightGBM (with sklearn)
    cost them ~1.7 s of start-up when labelling.estimates imported the model registry at its top."""
    import os

    env_home = str(tmp_path / "home")
    for argv in (
        ["metrics", "show", "--tenant", "t1"],
        ["settings", "set", "--tenant", "t1", "--email", "on"],
    ):
        code = (
            "import json, os, sys\n"
            f"os.environ['BOTFILTER_HOME'] = {env_home!r}\n"
            f"sys.argv = ['botfilter', *{argv!r}]\n"
            "from botfilter.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
        )
        loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
        assert not [m for m in ("mlflow", "lightgbm", "sklearn") if m in loaded], argv


def test_starting_the_workers_does_not_wait_for_their_imports(tmp_path):
    """`botfilter score` starts its worker pool first so that the fork server's imports run
    beside the command's own. Launching a process waits until the fork server has imported
    its preload list, which kept the command from its imports for those seconds: the launch
    now happens in a thread, and start_workers returns at once."""
    (tmp_path / "slow_preload.py").write_text("import time\ntime.sleep(2)\n")
    code = (
        "import os, time\n"
        "from scoring import workers\n"
        "if __name__ == '__main__':\n"
        "    workers.PRELOAD = (*workers.PRELOAD, 'slow_preload')\n"
        "    t = time.perf_counter()\n"
        "    pool = workers.start_workers(2)\n"
        "    took = time.perf_counter() - t\n"
        "    answered = pool.submit(os.getpid).result(timeout=120) > 0\n"
        "    pool.shutdown()\n"
        "    print(took, answered)\n"
    )
    script = tmp_path / "start.py"  # a file: the fork server re-imports the main module
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, env=env
    )
    took, answered = done.stdout.split()
    assert float(took) < 1.0 and answered == "True", done.stderr


def test_the_workers_preload_imports_no_settings_mlflow_or_scikit_learn():
    """The fork server's imports are on the way to the first scored part: it imports what a
    worker runs, not the command's settings (pydantic, 0.15 s), MLflow or scikit-learn."""
    from scoring.workers import PRELOAD

    modules = [m for m in PRELOAD if m != "scoring.warm"]  # scoring.warm warms: not here
    code = (
        "import json, sys\n"
        f"for name in {modules!r}:\n    __import__(name)\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "scoring.batch" in loaded
    assert not [m for m in ("pydantic", "core.settings", "mlflow", "sklearn") if m in loaded]


def test_the_process_that_hands_parts_to_the_workers_imports_no_scoring_stack():
    """`botfilter score`'s main process reads, hands parts over and writes: numba, scipy and
    LightGBM are the workers' (their fork server imports them once). Importing them there too
    took its imports from 72 to 162 MiB of resident memory."""
    code = (
        "import json, sys\n"
        "import jobs.commands, scoring.stream\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "scoring.registry" in loaded and "contract.parts" in loaded
    heavy = ("numba", "llvmlite", "scipy", "lightgbm", "features.pipeline", "scoring.batch")
    assert not [m for m in heavy if m in loaded]


def test_the_heap_is_left_to_the_system_at_exit_on_success_and_on_failure():
    """Python's collections at shutdown traversed every object a command made (0.15-0.37 s
    after `botfilter score` on 2.65M events): main() freezes the heap as the process exits,
    whichever way it exits."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, file=sys.stderr))\n"
        "from botfilter.cli import main\n"
        "main()\n"
    )
    for argv, status in ((["--help"], 0), (["score", "--bogus"], 2)):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
        assert done.returncode == status
        assert done.stderr.strip().splitlines()[-1] == "frozen True", argv
