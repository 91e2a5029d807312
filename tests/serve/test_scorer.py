"""The scorer in-process: bundle loading, scores, errors, adding items, restart."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mimrec.errors import MimrecError
from mimrec.eval.selection import selection_line, valid_best
from mimrec.serve.bundle import choose_model, load_bundle
from mimrec.serve.request_error import RequestError
from mimrec.serve.scorer import Scorer


@pytest.fixture(scope="module")
def scorer(trained_run):
    return Scorer(load_bundle(trained_run, "ciubm"))


def _some_ids(scorer, n, start=0):
    return [str(i) for i in scorer.catalogue.ids[start:start + n]]


def test_the_content_model_can_add_items_and_the_default_is_the_valid_best(scorer, trained_run):
    assert scorer.bundle.model_key == "ciubm-seed0"
    assert scorer.can_add_items and "title" in scorer.text_fields
    manifest = json.loads((trained_run / "ctr" / "manifest.json").read_text())
    margin = manifest["config"]["ctr"]["select_margin"]
    assert load_bundle(trained_run).model_key == f"{valid_best(manifest['metrics'], margin=margin)}-seed0"


def test_scores_are_probabilities_in_candidate_order(scorer):
    history, cands = _some_ids(scorer, 5), _some_ids(scorer, 8, start=10)
    p = scorer.score(history, cands, user_id=scorer.bundle.user_ids[0])
    assert p.shape == (8,) and ((p > 0) & (p < 1)).all()
    reversed_p = scorer.score(history, cands[::-1], user_id=scorer.bundle.user_ids[0])
    np.testing.assert_allclose(reversed_p[::-1], p, rtol=1e-5)
    as_ints = scorer.score([int(h) for h in history], [int(c) for c in cands],
                           user_id=int(scorer.bundle.user_ids[0]))
    np.testing.assert_allclose(as_ints, p, rtol=1e-6)


def test_the_history_changes_the_score(scorer):
    cands = _some_ids(scorer, 5, start=20)
    a = scorer.score(_some_ids(scorer, 10), cands)
    b = scorer.score(_some_ids(scorer, 10, start=100), cands)
    assert not np.allclose(a, b)


def test_unknown_ids_and_bad_features_name_the_field(scorer):
    with pytest.raises(RequestError) as e:
        scorer.score([], ["1", "no-such-item", "also-missing"])
    assert e.value.field == "candidates" and "'no-such-item'" in e.value.problem
    assert "'also-missing'" in e.value.problem
    with pytest.raises(RequestError, match="history"):
        scorer.score(["no-such-item"], ["1"])
    with pytest.raises(RequestError, match="user_id"):
        scorer.score([], ["1"], user_id="nobody")
    with pytest.raises(RequestError, match="shoe_size"):
        scorer.score([], ["1"], side={"shoe_size": 42})
    with pytest.raises(RequestError, match="gender"):
        scorer.score([], ["1"], side={"gender": "X?"})
    with pytest.raises(RequestError, match="at least one"):
        scorer.score([], [])


def test_side_features_are_read(scorer):
    cands = _some_ids(scorer, 5)
    known = scorer.score([], cands, side={"age": "24", "gender": "M"})
    other = scorer.score([], cands, side={"age": "53", "gender": "F"})
    assert not np.allclose(known, other)


def test_added_item_is_scored_by_its_content_and_survives_a_restart(run_copy):
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    history = _some_ids(scorer, 10)
    version = scorer.catalogue.store_version
    scorer.add_item("new-1", {"title": "toy story comedy", "year": "1995"}, None, None)
    first = scorer.score(history, ["new-1"])[0]
    assert scorer.catalogue.store_version == version + 1
    scorer.add_item("new-1", {"title": "war horror drama thriller", "year": "1950"}, None, None)
    second = scorer.score(history, ["new-1"])[0]
    assert first != pytest.approx(second, abs=1e-7)
    described = scorer.describe("new-1")
    assert described["title"] == "war horror drama thriller"
    assert not described["in_training_catalogue"] and described["added_while_serving"]

    again = Scorer(load_bundle(run_copy, "ciubm"))
    assert again.score(history, ["new-1"])[0] == pytest.approx(second, rel=1e-5)
    assert again.describe("new-1")["title"] == "war horror drama thriller"


def test_item_without_content_is_refused(run_copy):
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    with pytest.raises(RequestError, match="none of the switched-on modalities"):
        scorer.add_item("empty", {}, None, None)
    assert scorer.catalogue.row("empty") == 0


def test_id_only_model_cannot_add_items(trained_run):
    scorer = Scorer(load_bundle(trained_run, "din"))
    assert scorer.bundle.model_key == "din-seed0" and not scorer.can_add_items
    with pytest.raises(RequestError, match="cannot score new items"):
        scorer.add_item("x", {"title": "x"}, None, None)


def _record(model, seed, valid):
    return {"model": model, "seed": seed, "epochs": [{"valid_auc": 0.5}, {"valid_auc": valid}]}


def test_model_choice_errors():
    metrics = {"din-seed0": _record("din", 0, 0.7)}
    with pytest.raises(MimrecError, match="'ciubm' is not in this run"):
        choose_model(metrics, "ciubm")
    assert choose_model(metrics, None) == "din-seed0"


def test_the_valid_best_model_is_served_and_din_wins_a_tie():
    metrics = {"din-seed0": _record("din", 0, 0.70), "din-seed1": _record("din", 1, 0.72),
               "ciubm-seed0": _record("ciubm", 0, 0.70), "ciubm-seed1": _record("ciubm", 1, 0.72)}
    assert choose_model(metrics, None) == "din-seed1"  # a tie on valid: the ID-only model
    assert choose_model(metrics, "ciubm") == "ciubm-seed1"
    assert choose_model(metrics, "ciubm-seed0") == "ciubm-seed0"
    assert "content did not beat the ID-only model on valid: serving din" in selection_line(metrics)
    metrics["ciubm-seed0"] = _record("ciubm", 0, 0.71)
    assert choose_model(metrics, None) == "ciubm-seed1"
    assert choose_model(metrics, None, margin=0.01) == "din-seed1"  # ahead by 0.005 only
    assert selection_line(metrics).startswith("valid-best model: serving ciubm")


def test_serving_imports_no_training_code():
    code = ("import sys, mimrec.serve.app, mimrec.serve.server, mimrec.serve.bundle; "
            "bad = [m for m in sys.modules if m.startswith(('mimrec.ctr.train', 'mimrec.ctr.stage',"
            " 'mimrec.pretrain.train', 'mimrec.csft.train'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_second_process_on_the_same_store_sees_added_items(run_copy):
    first, second = Scorer(load_bundle(run_copy, "ciubm")), Scorer(load_bundle(run_copy, "ciubm"))
    history = _some_ids(first, 5)
    first.add_item("shared-1", {"title": "toy story comedy"}, None, None)
    second.add_item("shared-2", {"title": "war drama"}, None, None)
    expected = first.score(history, ["shared-1"])[0]
    assert second.score(history, ["shared-1", "shared-2"])[0] == pytest.approx(expected, rel=1e-5)
    assert first.score(history, ["shared-2"]).shape == (1,)
    assert first.describe("shared-2")["title"] == "war drama"  # fields are not lost either
    assert second.describe("shared-1")["title"] == "toy story comedy"
