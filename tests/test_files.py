"""Files: folders that appear whole or not at all, JSON with numpy values, CSV tables."""

import json
import os

import numpy as np
import pytest

from keras_pairs import files


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "results"
    with files.staged_folder(str(final)) as work:
        (tmp_path / "results.keep").write_text("")
        open(os.path.join(work, "a.txt"), "w").write("first")
    assert (final / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with files.staged_folder(str(final)) as work:
            open(os.path.join(work, "a.txt"), "w").write("second")
            raise RuntimeError("interrupted")
    assert (final / "a.txt").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["results", "results.keep"]


def test_json_takes_numpy_values_and_tuples(tmp_path):
    path = str(tmp_path / "a.json")
    files.write_json(path, {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2), "t": (1, 2)})
    with open(path) as f:
        assert json.load(f) == {"n": 3, "x": 0.5, "a": [0, 1], "t": [1, 2]}


def test_csv_has_every_column_in_order_and_appends_below_one_header(tmp_path):
    path = str(tmp_path / "rows.csv")
    files.write_csv(path, [{"arch": "v1", "round": 0}, {"arch": "v2", "seconds": 1.5, "round": 1}])
    with open(path, newline="") as f:
        assert f.read() == "arch,round,seconds\r\nv1,0,\r\nv2,1,1.5\r\n"
    appended = str(tmp_path / "study.csv")
    for row in ({"variant": "a", "score": 0.5}, {"variant": "b", "score": 0.75}):
        files.write_csv(appended, [row], columns=("variant", "score", "note"), append=True)
    with open(appended, newline="") as f:
        assert f.read() == "variant,score,note\r\na,0.5,\r\nb,0.75,\r\n"
    files.write_csv(appended, [], columns=("variant", "score", "note"))  # a fresh file: the header only
    with open(appended, newline="") as f:
        assert f.read() == "variant,score,note\r\n"
