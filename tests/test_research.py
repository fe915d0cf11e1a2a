"""What the studies of research/ share: a committed plan before the first round, and the development
round, which never touches the test split."""

import importlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from keras_pairs import data
from keras_pairs.errors import UserError
from research.common import committed_plan, development_round

ROOT = Path(__file__).resolve().parents[1]


def test_development_pairs_use_only_train_digits_the_round_did_not_draw(mnist):
    data_, dev = development_round(mnist, 1000, 0.1, seed=1000, n_dev=300)
    fit, val, _ = data.draw_round(mnist, 1000, 10, 0.1, seed=1000)
    np.testing.assert_array_equal(data_.fit.index, fit.index)  # the round's own training pairs
    np.testing.assert_array_equal(data_.test.index, val.index)  # its "test" = its validation pairs
    drawn = np.concatenate([fit.index.ravel(), val.index.ravel()])
    assert not np.isin(dev.index, drawn).any() and (dev.index[:, 0] != dev.index[:, 1]).all()
    np.testing.assert_array_equal(dev.classes, mnist.y_train[dev.index])
    raw_a = dev.images[..., 0] * data_.std + data_.mean  # normalised like the round
    np.testing.assert_allclose(raw_a, data.pool_2x2(mnist.x_train[dev.index[:, 0]]), atol=1e-3)


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_study_starts_only_from_a_committed_plan(tmp_path):
    git(tmp_path, "init", "-q")
    plan = tmp_path / "plans" / "study.md"
    with pytest.raises(UserError, match="no plan at"):
        committed_plan(str(plan))
    plan.parent.mkdir()
    plan.write_text("candidates, metric, decision rule\n")
    with pytest.raises(UserError, match="uncommitted changes"):  # not tracked yet
        committed_plan(str(plan))
    git(tmp_path, "add", "plans/study.md")
    with pytest.raises(UserError, match="uncommitted changes"):  # staged, not committed
        committed_plan(str(plan))
    git(tmp_path, "commit", "-q", "-m", "plan")
    commit = git(tmp_path, "rev-parse", "HEAD")
    assert committed_plan(str(plan)) == commit
    (tmp_path / "other.txt").write_text("later work")
    git(tmp_path, "add", "other.txt")
    git(tmp_path, "commit", "-q", "-m", "later")
    assert committed_plan(str(plan)) == commit, "the commit that last changed the plan, not HEAD"
    plan.write_text("candidates changed after the fact\n")
    with pytest.raises(UserError, match="uncommitted changes"):
        committed_plan(str(plan))


def test_a_plan_outside_a_git_checkout_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plan = tmp_path / "study.md"
    plan.write_text("plan\n")
    with pytest.raises(UserError, match="git"):
        committed_plan(str(plan))


@pytest.mark.parametrize("script", ["early_stopping", "distillation", "test_time_views"])
def test_every_study_has_a_plan_and_refuses_to_train_without_a_committed_one(script, tmp_path, monkeypatch, capsys):
    text = (ROOT / "research" / "plans" / f"{script}.md").read_text()
    assert all(f"## {part}" in text for part in ("Candidates", "Metric", "Decision rule"))
    monkeypatch.syspath_prepend(str(ROOT / "research"))

    def trained(*args, **kwargs):
        raise AssertionError("the study loaded data before checking its plan")

    monkeypatch.setattr(data, "load_mnist", trained)
    module = importlib.import_module(f"research.{script}")
    missing = tmp_path / "no-plan.md"
    assert module.main(["--plan", str(missing), "--output", str(tmp_path / "out.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no plan at {missing}: write the study's candidates, " \
        "metric and decision rule there and commit it before the first round runs"
    assert not (tmp_path / "out.csv").exists()
