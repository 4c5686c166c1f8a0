"""``python -m bench gpu`` runs on a CPU with a tiny HMR 2.0 and prints the table it prints on a GPU
(no timing is checked: CI proves the bench a lent GPU will run works end to end)."""
import pytest

pytest.importorskip("torch")

from bench import gpu  # noqa: E402

from conftest import VIDEO  # noqa: E402


def test_the_gpu_bench_runs_on_a_cpu_with_a_tiny_model_and_prints_its_table(capsys):
    if not VIDEO.exists():
        pytest.skip(f"{VIDEO} not found (the shared media folder)")
    gpu.main(["--seconds", "1", "--warm-up", "0.5", "--boxes", "blazepose"])
    section = capsys.readouterr().out
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[:2] for row in rows] == [["| 1", "fp32"], ["| 2", "fp32"], ["| 1", "bf16"],
                                                       ["| 2", "bf16"]]
    assert "| S | precision | fps per stream | keeps up | crops/s |" in section and "tiny" in section
    assert sum(float(row.split(" | ")[4]) for row in rows) > 0  # HMR 2.0 ran on the runner's crops
