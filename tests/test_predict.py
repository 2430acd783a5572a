"""Predictor and its parts: the cached decoder's shared-prefix label scoring against a naive computation, its
sampling against transformers' generate, batching; answers read back as votes and regression draws."""

import numpy as np
import pandas as pd
import pytest
import torch

from lift_core import answers, models
from lift_core.decoding import (MIN_SHARED_PROMPT_TOKENS, CachedDecoder, LabelTokens, common_prefix_length,
                                prefix_batches)
from lift_core.predict import Predictor
from lift_core.prompts import PromptTemplate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ANIMALS = ["cat", "horse", "ox"]


@pytest.fixture(scope="module")
def tiny(model_cache):
    """The untrained tiny model (no LoRA) and its tokenizer."""
    torch.manual_seed(0)
    loaded = models.load_model("tiny", "none")
    return loaded.model.eval(), loaded.tokenizer


@pytest.fixture(scope="module")
def template():
    return PromptTemplate(features=["x1", "x2"], target="y")


@pytest.fixture(scope="module")
def rows():
    # Different widths of numbers give prompts of different token lengths, so left padding matters.
    return pd.DataFrame({"x1": [0.5, -1234.25, 3.0, 77.125, -0.004, 12.0, 9.99],
                         "x2": [1.0, 22.5, -0.333, 5.0, 100000.0, -8.5, 0.01]})


def naive_scores(model, tokenizer, template, frame, classes):
    """Log-likelihood of each class's answer: one full forward pass over prompt + answer per (row, class)."""
    scores = np.zeros((len(frame), len(classes)))
    for i, row in enumerate(frame.to_dict("records")):
        prompt_ids = tokenizer(template.prompt(row))["input_ids"]
        for j, label in enumerate(classes):
            answer_ids = tokenizer(template.completion(label), add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + answer_ids])
            with torch.no_grad():
                log_probs = model(input_ids=ids).logits[0].float().log_softmax(-1)
            # The token at position t is predicted by the logits at t - 1.
            scores[i, j] = sum(log_probs[len(prompt_ids) + k - 1, token].item()
                               for k, token in enumerate(answer_ids))
    return scores


def normalized_entropy(shares: np.ndarray) -> np.ndarray:
    """Each row's entropy over log(number of classes): 0 for a certain row, 1 for an even one."""
    logs = np.log(np.where(shares > 0, shares, 1.0))
    return -(shares * logs).sum(1) / np.log(shares.shape[1])


# ---- label scoring ------------------------------------------------------------------------------------------

def test_labels_have_different_token_lengths(tiny, template):
    _, tokenizer = tiny
    labels = LabelTokens.build(tokenizer, [template.completion(label) for label in ANIMALS])
    lengths = labels.mask.sum(1).tolist()
    assert len(set(lengths)) == 3, lengths  # the case where padding of the label block matters
    assert labels.ids.shape == (3, max(lengths))
    for row, label in enumerate(ANIMALS):
        expected = tokenizer(template.completion(label), add_special_tokens=False)["input_ids"]
        assert labels.ids[row, :lengths[row]].tolist() == expected


@pytest.mark.parametrize("batch_size", [32, 3, 1])
def test_shared_prefix_scoring_equals_naive_scoring(tiny, template, rows, batch_size):
    model, tokenizer = tiny
    labels = LabelTokens.build(tokenizer, [template.completion(label) for label in ANIMALS])
    prompts = [tokenizer(template.prompt(row))["input_ids"] for row in rows.to_dict("records")]
    fast = CachedDecoder(model, tokenizer).label_scores(prompts, labels, batch_size)
    expected = naive_scores(model, tokenizer, template, rows, ANIMALS)
    assert fast.shape == (len(rows), 3)
    # The answers' common first tokens are left out: the same constant for every class of a row, which the
    # probabilities do not see. Differences between classes are exact.
    np.testing.assert_allclose(fast - fast[:, :1], expected - expected[:, :1], atol=1e-4, rtol=0)
    if labels.shared == 0:
        np.testing.assert_allclose(fast, expected, atol=1e-4, rtol=0)
    # Untrained, the scores are far from equal, so a mix-up of rows or classes could not pass.
    assert np.ptp(expected - expected[:, :1]) > 1.0


def test_single_token_labels_equal_naive_scoring(tiny, template, rows):
    model, tokenizer = tiny
    # Real completions (" 0@@@") take several tokens; one-token labels exercise the path without a cache.
    labels = LabelTokens(ids=torch.tensor([[223], [18]]), mask=torch.ones(2, 1, dtype=torch.long), shared=0)
    prompts = [tokenizer(template.prompt(row))["input_ids"] for row in rows.to_dict("records")]
    fast = CachedDecoder(model, tokenizer).label_scores(prompts, labels, batch_size=64)
    for i, tokens in enumerate(prompts):
        with torch.no_grad():
            last = model(input_ids=torch.tensor([tokens])).logits[0, -1].log_softmax(-1)
        np.testing.assert_allclose(fast[i], [last[223].item(), last[18].item()], atol=1e-4, rtol=0)


def test_probabilities_sum_to_one(tiny, template, rows):
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, template, "classification", ANIMALS)
    result = predictor.predict(rows)
    assert list(result.columns) == ["y_pred", "p_cat", "p_horse", "p_ox", "spread", "invalid"]
    proba = result[["p_cat", "p_horse", "p_ox"]].to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    expected = naive_scores(model, tokenizer, template, rows, ANIMALS)
    softmax = np.exp(expected - expected.max(1, keepdims=True))
    np.testing.assert_allclose(proba, softmax / softmax.sum(1, keepdims=True), atol=1e-4)
    assert result["y_pred"].tolist() == [ANIMALS[i] for i in expected.argmax(1)]
    assert (result["invalid"] == 0).all()
    np.testing.assert_allclose(result["spread"], normalized_entropy(proba), atol=1e-6)


def test_a_grid_runs_its_shared_prompt_prefix_once_and_scores_as_a_full_pass(tiny, template):
    model, tokenizer = tiny
    # Two columns of a grid: x1 fixed, x2 varying, given out of order.
    grid = pd.DataFrame({"x1": [1.5, -2.25] * 4, "x2": [0.1, 2.0, -3.5, 40.0, 0.0, 7.75, -0.5, 12.0]})
    column = [tokenizer(template.prompt(row))["input_ids"] for row in grid[grid.x1 == 1.5].to_dict("records")]
    assert common_prefix_length(column) >= MIN_SHARED_PROMPT_TOKENS
    shapes = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: shapes.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    try:
        proba = Predictor(model, tokenizer, template, "classification", ANIMALS, batch_size=4).class_probabilities(grid)
    finally:
        hook.remove()
    # Each batch runs its shared prefix alone (batch 1) before the prompts' own tokens: far fewer prompt tokens.
    prompt_passes = [shape for shape in shapes if shape[0] <= 4]
    assert prompt_passes[0][0] == 1
    plain_tokens = sum(len(tokenizer(template.prompt(row))["input_ids"]) for row in grid.to_dict("records"))
    assert sum(shape[0] * shape[1] for shape in prompt_passes) < 0.8 * plain_tokens
    expected = naive_scores(model, tokenizer, template, grid, ANIMALS)
    softmax = np.exp(expected - expected.max(1, keepdims=True))
    np.testing.assert_allclose(proba, softmax / softmax.sum(1, keepdims=True), atol=1e-4)


def test_prefix_batches_cut_a_grid_into_its_columns_and_cover_every_row_once():
    column = [[1, 2, 3, value, 9] for value in (7, 8, 6)]
    other_column = [[1, 2, 4, value, 9] for value in (8, 7)]
    encoded = [column[0], other_column[0], column[1], other_column[1], column[2]]
    assert prefix_batches(encoded, batch_size=8) == [[4, 0, 2], [3, 1]]  # each column in token order
    assert prefix_batches(encoded, batch_size=2) == [[4, 0], [2], [3, 1]]
    assert prefix_batches([], batch_size=4) == []


def test_common_prefix_length_leaves_each_sequence_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert common_prefix_length([[1, 2], [1, 2, 3]]) == 1
    assert common_prefix_length([[5, 6, 7]]) == 2
    assert common_prefix_length([[1], [2]]) == 0


def test_batched_prediction_keeps_row_order(tiny, template, rows):
    model, tokenizer = tiny
    batched = Predictor(model, tokenizer, template, "classification", ANIMALS, batch_size=4).predict(rows)
    one_by_one = pd.concat([Predictor(model, tokenizer, template, "classification", ANIMALS).predict(rows.iloc[[i]])
                            for i in range(len(rows))], ignore_index=True)
    columns = ["p_cat", "p_horse", "p_ox", "spread"]
    np.testing.assert_allclose(batched[columns].to_numpy(), one_by_one[columns].to_numpy(), atol=1e-4)
    assert batched["y_pred"].tolist() == one_by_one["y_pred"].tolist()
    # Reversing the input reverses the output.
    reverse = Predictor(model, tokenizer, template, "classification", ANIMALS, batch_size=4).predict(rows[::-1])
    np.testing.assert_allclose(reverse[columns].to_numpy()[::-1], batched[columns].to_numpy(), atol=1e-4)


def test_progress_reports_every_batch(tiny, template, rows):
    model, tokenizer = tiny
    calls = []
    Predictor(model, tokenizer, template, "classification", ANIMALS, batch_size=3).predict(
        rows, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_empty_frame_gives_empty_result(tiny, template):
    model, tokenizer = tiny
    result = Predictor(model, tokenizer, template, "classification", ANIMALS).predict(
        pd.DataFrame({"x1": [], "x2": []}))
    assert len(result) == 0
    assert {"y_pred", "p_cat", "p_horse", "p_ox"} <= set(result.columns)


# ---- the model's mode belongs to its owner ------------------------------------------------------------------

def test_predictor_leaves_an_eval_model_in_eval_mode(tiny, template, rows):
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, template, "classification", ANIMALS)
    predictor.predict(rows.head(2))
    predictor.sample_answers(rows.head(2))
    assert not model.training


def test_a_model_in_training_mode_is_refused_and_left_in_it(tiny, template, rows):
    """Dropout would make the predictions noisy: the caller is told to call model.eval(), and the model's mode
    stays as the caller set it."""
    model, tokenizer = tiny
    model.train()
    try:
        predictor = Predictor(model, tokenizer, template, "classification", ANIMALS)
        assert model.training
        for predict in (lambda: predictor.predict(rows.head(2)), lambda: predictor.sample_answers(rows.head(2))):
            with pytest.raises(RuntimeError, match=r"model\.eval\(\)"):
                predict()
            assert model.training
    finally:
        model.eval()


def test_the_decoder_imports_nothing_of_lift_core():
    """It works on token ids: runs, configs and templates are the Predictor's business."""
    import ast
    import inspect

    from lift_core import decoding

    tree = ast.parse(inspect.getsource(decoding))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in modules if name.startswith("lift_core")}


# ---- a trained model: voting ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_run):
    run = tiny_run[1]
    assert run.status()["state"] == "completed"
    return run


@pytest.fixture(scope="module")
def trained_predictor(trained):
    return Predictor.from_run(trained)


def test_predictor_from_run_scores_the_test_split(trained, trained_predictor):
    predictor = trained_predictor
    assert predictor.classes == ["0", "1"]
    test = trained.split("test")
    result = predictor.predict(test)
    assert len(result) == len(test)
    assert (result["y_pred"] == test["y"]).mean() >= 0.9
    np.testing.assert_allclose(result[["p_0", "p_1"]].sum(1), 1.0, atol=1e-6)


def test_vote_shares(trained, trained_predictor):
    predictor = trained_predictor
    test = trained.split("test").head(12)
    torch.manual_seed(0)
    result = predictor.predict(test, samples=5, temperature=1.0)
    assert list(result.columns) == ["y_pred", "p_0", "p_1", "spread", "invalid"]
    shares = result[["p_0", "p_1"]].to_numpy()
    # Five votes per row, each for a class or invalid: every share is a count of votes over 5.
    votes = np.column_stack([shares, result["invalid"]]) * 5
    np.testing.assert_allclose(votes, np.round(votes), atol=1e-9)
    assert (np.round(votes).sum(1) == 5).all() and (np.round(votes) >= 0).all()
    # The spread is the entropy of the valid votes; a row without one is as uncertain as can be.
    spread, voted = result["spread"].to_numpy(), shares.sum(1) > 0
    assert voted.any()
    valid_shares = shares[voted] / shares[voted].sum(1, keepdims=True)
    np.testing.assert_allclose(spread[voted], normalized_entropy(valid_shares), atol=1e-9)
    assert (spread[~voted] == 1).all()
    # The trained model mostly answers in the right form, and its winning votes are right.
    assert result["invalid"].mean() <= 0.5
    voted = result["y_pred"].notna()
    assert voted.sum() >= 10
    assert (result.loc[voted, "y_pred"] == test.loc[voted, "y"]).mean() >= 0.9


def test_greedy_vote_is_a_single_certain_answer(trained, trained_predictor):
    test = trained.split("test").head(8)
    result = trained_predictor.predict(test, samples=1, temperature=0.0)
    assert (result["invalid"] == 0).all()
    assert set(result[["p_0", "p_1"]].to_numpy().ravel()) <= {0.0, 1.0}
    assert (result["spread"] == 0).all()
    assert (result["y_pred"] == test["y"]).mean() >= 0.9


def test_vote_with_every_answer_invalid(tiny, template, rows):
    """An untrained model writes garbage: no votes, invalid 1, maximal spread, no predicted class."""
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, template, "classification", ANIMALS)
    torch.manual_seed(0)
    result = predictor.predict(rows.head(3), samples=3, temperature=1.0)
    assert (result["invalid"] == 1).all()
    assert (result[["p_cat", "p_horse", "p_ox"]].to_numpy() == 0).all()
    assert result["y_pred"].isna().all()
    np.testing.assert_allclose(result["spread"], 1.0)


# ---- generation ---------------------------------------------------------------------------------------------

def generate_greedily(model, tokenizer, template, frame, max_new_tokens):
    """transformers' own greedy generate, one prompt at a time, stopped at the answer terminator."""
    answers = []
    for row in frame.to_dict("records"):
        ids = torch.tensor([tokenizer(template.prompt(row))["input_ids"]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id, stop_strings=["@@@"],
                             tokenizer=tokenizer)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return answers


def test_greedy_answers_equal_transformers_generate(tiny, template):
    model, tokenizer = tiny
    grid = pd.DataFrame({"x1": [1.5] * 3 + [-2.25] * 3, "x2": [0.1, 2.0, -3.5, 40.0, 0.0, 7.75]})
    for task, classes in (("classification", ANIMALS), ("regression", None)):
        predictor = Predictor(model, tokenizer, template, task, classes, batch_size=3)
        answers = predictor.sample_answers(grid, k=1, temperature=0.0)
        max_new_tokens = predictor.labels.ids.shape[1] + 2 if classes else 14 + template.decimals
        assert [texts[0] for texts in answers] == generate_greedily(model, tokenizer, template, grid, max_new_tokens)


def test_k_samples_share_one_pass_of_their_prompt(tiny, template):
    model, tokenizer = tiny
    batches = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: batches.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    try:
        torch.manual_seed(0)
        answers = Predictor(model, tokenizer, template, "regression", batch_size=8).sample_answers(
            pd.DataFrame({"x1": [0.5, 3.0], "x2": [1.0, -2.0]}), k=4, temperature=1.0)
    finally:
        hook.remove()
    assert len(answers) == 2 and all(len(texts) == 4 for texts in answers)
    first_step = batches.index((8, 1))
    # The two prompts, once each (their shared prefix once), then one token at a time for the 2 x 4 answers.
    assert first_step > 0 and all(shape[0] <= 2 for shape in batches[:first_step])
    assert all(shape == (8, 1) for shape in batches[first_step:])


# ---- regression ---------------------------------------------------------------------------------------------

def test_regression_falls_back_to_the_training_mean(tiny, template, rows):
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, template, "regression", fallback_value=3.25)
    torch.manual_seed(0)
    answers = predictor.sample_answers(rows.head(4), k=3, temperature=1.0)
    assert len(answers) == 4 and all(len(texts) == 3 for texts in answers)
    torch.manual_seed(0)
    result = predictor.predict(rows.head(4), samples=3, temperature=1.0)
    assert list(result.columns) == ["y_pred", "median", "std", "invalid"]
    assert (result["invalid"] == 1.0).all()
    assert (result["y_pred"] == 3.25).all() and (result["median"] == 3.25).all()
    assert (result["std"] == 0).all()


def test_regression_fallback_without_a_training_mean_is_zero(tiny, template, rows):
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, template, "regression")
    result = predictor.predict(rows.head(2), samples=2, temperature=1.0)
    assert (result["invalid"] == 1.0).all()
    assert (result["y_pred"] == 0.0).all()


def test_regression_averages_valid_samples(tiny, template, rows, monkeypatch):
    """Valid draws are averaged; invalid ones only count towards the invalid share."""
    model, tokenizer = tiny
    predictor = Predictor(model, tokenizer, template, "regression", fallback_value=100.0)
    canned = [[" 1.5@@@", " 2.5@@@", "junk", " 3.5@@@"], ["-2@@@", "x", "y", "z"]]
    monkeypatch.setattr(predictor, "sample_answers", lambda frame, k, temperature, progress=None: canned)
    result = predictor.predict(rows.head(2), samples=4)
    assert result["y_pred"].tolist() == [2.5, -2.0]
    assert result["median"].tolist() == [2.5, -2.0]
    assert result["invalid"].tolist() == [0.25, 0.75]
    np.testing.assert_allclose(result["std"], [np.std([1.5, 2.5, 3.5]), 0.0])


# ---- answers read back, without a model ----------------------------------------------------------------------

def test_probabilities_are_the_softmax_of_the_scores_and_ignore_a_constant_per_row():
    scores = np.array([[0.0, np.log(3.0)], [-1000.0, -1000.0]])
    np.testing.assert_allclose(answers.probabilities(scores), [[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(answers.probabilities(scores + [[5.0], [-7.0]]), answers.probabilities(scores))


def test_scored_frame_picks_the_likeliest_class_and_is_never_invalid():
    result = answers.scored_frame(["a", "b", "c"], np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]))
    assert list(result.columns) == ["y_pred", "p_a", "p_b", "p_c", "spread", "invalid"]
    assert result["y_pred"].tolist() == ["b", "a"]
    assert result["invalid"].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(result["spread"], [normalized_entropy(np.array([[0.2, 0.5, 0.3]]))[0], 0.0])
    assert str(result["spread"][1]) == "0.0"  # a certain row's spread is 0, not -0


def test_vote_frame_counts_votes_and_invalid_answers():
    drawn = [[" a@@@", "a", " b@@@", "junk"], ["x@@@", "y"]]
    result = answers.vote_frame(["a", "b"], drawn)
    assert result["y_pred"][0] == "a" and pd.isna(result["y_pred"][1])
    np.testing.assert_allclose(result[["p_a", "p_b"]], [[0.5, 0.25], [0.0, 0.0]])
    assert result["invalid"].tolist() == [0.25, 1.0]
    # The spread is the entropy of the valid votes only; a row without one is as uncertain as can be.
    np.testing.assert_allclose(result["spread"], [normalized_entropy(np.array([[2 / 3, 1 / 3]]))[0], 1.0])


def test_regression_frame_averages_parsed_numbers_and_falls_back():
    result = answers.regression_frame([[" 1@@@", " 3@@@", "?"], ["?", "?"]], fallback_value=None)
    assert list(result.columns) == ["y_pred", "median", "std", "invalid"]
    assert result["y_pred"].tolist() == [2.0, 0.0]  # no training mean: 0
    assert result["std"].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(result["invalid"], [1 / 3, 1.0])
    assert answers.regression_frame([["?"]], fallback_value=7.5)["median"].tolist() == [7.5]
    assert len(answers.regression_frame([], fallback_value=None)) == 0


def test_evaluating_a_handed_over_model_puts_it_in_eval_mode(tiny_run, tmp_path):
    """Training hands its model over still in training mode; the evaluation owns the switch, not the Predictor."""
    import shutil

    from lift_core.evaluation import evaluate_run
    from lift_core.predict import load_run_model
    from lift_core.runs import Run

    run = Run(shutil.copytree(tiny_run[1].path, tmp_path / "run"))  # the shared run's results stay as they are
    model, tokenizer = load_run_model(run)
    model.train()
    results = evaluate_run(run, model=model, tokenizer=tokenizer)
    assert not model.training
    assert results["accuracy"] == tiny_run[1].eval_results()["accuracy"]


def test_a_run_loads_with_its_adapter_merged_and_predicts_as_the_unmerged_model(tiny_run):
    from peft import PeftModel

    _, run = tiny_run
    merged = Predictor.from_run(run)
    assert not isinstance(merged.model, PeftModel)  # folded into the weights: no LoRA layers left to run
    assert not merged.model.training  # the loader owns the model it loads, so it sets its mode
    loaded = models.load_model("tiny", "none")
    unmerged = Predictor.for_run(run, PeftModel.from_pretrained(loaded.model, run.adapter_dir), loaded.tokenizer)
    rows = run.split("test")
    np.testing.assert_allclose(merged.class_probabilities(rows), unmerged.class_probabilities(rows), atol=1e-4)
