"""The command line: subcommands, the older ``launch.py VIDEO`` form, and the installed ``posebus`` command."""
import subprocess
import sys
from pathlib import Path

from launcher.cli import parse_args

from conftest import VIDEO, free_port


def test_a_subcommand_or_a_video_comes_first():
    assert parse_args(["serve", "--workers", "2"]).command == "serve"
    assert (parse_args(["clip.mp4", "--workers", "2"]).command, parse_args(["clip.mp4"]).source) == ("run", "clip.mp4")
    assert vars(parse_args(["--workers", "2", "clip.mp4"])) == vars(parse_args(["run", "clip.mp4", "--workers", "2"]))
    a_video_named_serve = parse_args(["run", "serve"])
    assert (a_video_named_serve.command, a_video_named_serve.source) == ("run", "serve")
    assert parse_args(["status", "--once"]).once


def test_the_installed_posebus_command_runs_a_video_from_any_folder(tmp_path):
    """A backend spawns ``posebus`` from its own folder, not from this checkout."""
    posebus = Path(sys.executable).parent / "posebus"
    result = subprocess.run([str(posebus), "run", str(VIDEO), "--job", "anywhere", "--out", "out",
                             "--results", f"tcp://127.0.0.1:{free_port()}", "--job-log", "logs"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "out" / "anywhere.jsonl").read_text().splitlines()) >= 182  # job_start, 180 frames, job_end
