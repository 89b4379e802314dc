"""The verification table a build prints: aligned columns whatever the cell names, and a
verdict that a NaN error can never turn into "ok"."""

from symbptt.build import CellBuild, summary_table


def test_columns_stay_aligned_for_long_cell_names():
    rows = [CellBuild("rnn", 2, 5, fd_error=1e-9, fd_truncated_error=2e-9, seconds=1.0),
            CellBuild("lstm_peephole_variant", 7, 13, fd_error=3e-9, fd_truncated_error=4e-9, seconds=2.5)]
    lines = summary_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1, lines  # header, rule and rows equally wide
    assert lines[3].startswith("lstm_peephole_variant ")
    assert lines[2].split()[:3] == ["rnn", "2", "5"]


def test_a_nan_or_large_error_is_failed():
    rows = [CellBuild("a", 1, 1, fd_error=float("nan"), fd_truncated_error=1e-9),
            CellBuild("b", 1, 1, fd_error=1e-9, fd_truncated_error=1e-3),
            CellBuild("c", 1, 1, fd_error=1e-9, fd_truncated_error=1e-9)]
    verdicts = [line.split()[3] for line in summary_table(rows).splitlines()[2:]]
    assert verdicts == ["FAILED", "FAILED", "ok"]
