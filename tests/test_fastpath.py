"""The fast path's distilled head: sampling a register, agreement of the fast scores with the transformer on
held-out texts, re-scored firms carrying exactly the transformer's labels, the cached head, bad input.
Real encoder, real model trained by the session fixture, real MLflow SQLite registry, the real CLI."""

import logging
import os
import signal

import numpy as np
import pandas as pd
import pytest

from rtic.mlops import registry
from rtic.score.batch import classify_register
from rtic.config import DEFAULT_SEED_LABELS
from rtic.errors import RticError
from rtic.score.fastpath import (NOBODY, FastHead, FastScorer, build_fast_path, calibrated_logits, change_risk, escalation_table, head_path,
                                 label_agreement, rescore_mask, sample_register, StaticEncoder, static_model_path, wilson_low)
from conftest import needs_mpnet, run_cli
from rtic.embed.encoder import MINILM, MPNET

SEED = pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False)


def write_register(path, texts, prefix="F"):
    pd.DataFrame({"firm_id": [f"{prefix}{i:05d}" for i in range(len(texts))], "text": texts}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def distilled(trained, settings, tmp_path_factory):
    """A head distilled on 160 seed texts given as a register; the model's own training texts are others."""
    tmp = tmp_path_factory.mktemp("fast")
    register = write_register(tmp / "distil.csv", SEED["text"].iloc[300:460].tolist())
    res = run_cli("fastpath", "build", "--register", str(register), "--sample", "160", home=settings.home)
    assert res.returncode == 0, res.stderr
    return res


def test_sample_register_is_uniform_deterministic_and_skips_firms_without_text(tmp_path):
    texts = [f"firm number {i} makes things" if i % 10 else "" for i in range(3000)]
    register = write_register(tmp_path / "r.csv", texts)
    first = sample_register(register, 200)
    assert first == sample_register(register, 200)
    assert len(set(first)) == 200 and all(first)
    numbers = np.array([int(t.split()[2]) for t in first])
    assert numbers.min() < 300 and numbers.max() > 2700  # drawn from the whole file, not its head
    assert len(sample_register(register, 5000)) == 2700  # smaller register: every firm with text


def test_build_reports_the_head_and_its_validation_table(distilled, settings):
    out = distilled.stdout
    assert "(random sample of 160 firms from distil.csv, and the model's" in out
    assert "residual sigma" in out and "of firms identical (95% lower bound" in out and "`rtic classify --fast` will re-score firms with risk >=" in out
    # sigma and the risk table describe the register's sample, not the training texts also used to fit the map
    assert "residuals measured on the 160 sampled texts only" in out
    assert list(settings.home.joinpath("static").glob("head-*.joblib"))


def test_fast_scores_agree_with_the_transformer_on_held_out_texts(distilled, settings):
    model = registry.open_model(None, settings)
    scorer = FastScorer.for_model(model, settings, transformer=None)
    held_out = SEED["text"].iloc[600:700].tolist()  # neither distilled on nor trained on
    fast = scorer.logits(held_out)
    true = calibrated_logits(scorer.clf, model.classifier.encoder, held_out)
    residual = np.abs(true - fast)
    # The stated margin: the residual sigma measured when the head was built carries over to new texts.
    assert (residual <= 3 * scorer.head.sigma).mean() >= 0.95
    decisions_agree = ((fast >= scorer.cut) == (true >= scorer.cut)).mean()
    assert decisions_agree >= 0.9
    # Scores, not just labels: the fast logits track the transformer's (correlation across texts, per sector).
    correlation = [np.corrcoef(true[:, j], fast[:, j])[0, 1] for j in range(true.shape[1])]
    assert np.median(correlation) > 0.7 and min(correlation) > 0.4, correlation
    # Where the fast label differs from the transformer's, the firm is near the threshold: z = 4 re-scores it.
    wrong = (fast >= scorer.cut) != (true >= scorer.cut)
    near = np.abs(fast - scorer.cut) < 4 * scorer.head.sigma
    assert near[wrong].mean() >= 0.9


def test_rescored_firms_get_exactly_the_transformer_labels(distilled, settings, tmp_path):
    register = write_register(tmp_path / "r.csv", SEED["text"].iloc[700:740].tolist())
    exact = classify_register(register, tmp_path / "t.parquet", settings, chunk_rows=25)
    transformer = pd.read_parquet(exact.labels_path).drop(columns="classified_at").sort_values(["firm_id", "sector_id"]).reset_index(drop=True)
    everyone = classify_register(register, tmp_path / "all.parquet", settings, chunk_rows=25, fast=True, fast_risk=0.0)
    assert everyone.n_escalated == 40
    fast = pd.read_parquet(everyone.labels_path).drop(columns="classified_at").sort_values(["firm_id", "sector_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(fast, transformer)
    scorer = FastScorer.for_model(registry.open_model(None, settings), settings, transformer=None)
    risk = change_risk(scorer.logits(SEED["text"].iloc[700:740].tolist()), scorer.cut, scorer.head.sigma)
    some = classify_register(register, tmp_path / "some.parquet", settings, chunk_rows=25, fast=True, fast_risk=float(np.median(risk)))
    mixed = pd.read_parquet(some.labels_path).drop(columns="classified_at").sort_values(["firm_id", "sector_id"]).reset_index(drop=True)
    rescored = mixed["scored_by"] == "transformer"
    assert 0 < some.n_escalated == mixed.loc[rescored, "firm_id"].nunique() < 40
    assert mixed.groupby("firm_id")["scored_by"].nunique().max() == 1  # whole firms are re-scored, never single decisions
    pd.testing.assert_frame_equal(mixed[rescored].drop(columns="scored_by"), transformer[rescored].drop(columns="scored_by"))


def test_the_head_is_built_once_and_reused(distilled, settings, monkeypatch):
    ref = registry.resolve(None, settings)
    path = head_path(settings, ref, StaticEncoder.load(static_model_path(settings)))
    before = path.stat().st_mtime_ns
    import rtic.score.fastpath as fastpath

    monkeypatch.setattr(fastpath, "build_head", lambda *a, **k: pytest.fail("the cached head should have been reused"))
    scorer = FastScorer.for_model(registry.open_model(None, settings), settings, transformer=None)
    assert scorer.head.corpus.startswith("random sample of 160 firms") and path.stat().st_mtime_ns == before
    assert scorer.identity()["head_digest"] == scorer.head.digest


def test_risk_out_of_range_is_one_line_exit_2(distilled, settings, tmp_path):
    register = write_register(tmp_path / "r.csv", ["a firm that builds batteries"])
    res = run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), "--fast", "--fast-risk=-1", home=settings.home)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "--fast-risk" in res.stderr and "Traceback" not in res.stderr
    for risk in (float("nan"), 1.5):
        with pytest.raises(RticError, match="--fast-risk is a firm's chance of any label change"):
            classify_register(register, tmp_path / "o.parquet", settings, fast=True, fast_risk=risk)


@pytest.mark.parametrize("args, message", [
    (["--register", "missing.csv"], "missing.csv"),
    (["--register", "SMALL", "--sample", "10"], "--sample must be at least 50"),
    (["--store", "crawl.sqlite"], "crawl store not found"),
])
def test_build_bad_input_is_one_line_exit_2(trained, settings, tmp_path, args, message):
    small = write_register(tmp_path / "small.csv", ["a firm"] * 3)
    args = [str(small) if a == "SMALL" else str(tmp_path / a) if a.endswith((".csv", ".sqlite")) else a for a in args]
    res = run_cli("fastpath", "build", *args, home=settings.home)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and res.stderr.strip().count("\n") == 0


def test_a_register_too_small_to_distil_on_is_refused(trained, settings, tmp_path):
    register = write_register(tmp_path / "r.csv", ["a firm that builds batteries"] * 10 + [""] * 5)
    with pytest.raises(RticError, match="only 10 firms with text"):
        build_fast_path(settings, register=register, sample=60)


@pytest.mark.parametrize("model", [MINILM, pytest.param(MPNET, marks=needs_mpnet)], ids=lambda m: m.name)
def test_static_token_ids_from_a_prefix_equal_the_whole_texts(model):
    from rtic.score.fastpath import StaticEncoder

    static = StaticEncoder(np.zeros((30527, 4), dtype=np.float32), model)
    from rtic.embed.encoder import Encoder

    # the windows the transformer itself reads (its loaded max_seq_length, not the record's number)
    assert static.max_tokens == 8 * (Encoder(model=model)._load().max_seq_length - 2)
    prose = " ".join(SEED["text"].tolist())[: 3 * static.prefix_chars]
    odd_words = ("x" * 99 + " ") * (static.prefix_chars // 50)  # long words: the prefix alone would be too few tokens to be sure
    short = "Heat pumps for social housing."
    for text in (prose, odd_words, short, ""):
        whole = static.tokenizer.encode(text, add_special_tokens=False).ids[: static.max_tokens]
        assert static.token_ids([text])[0] == whole
    assert len(static.token_ids([prose])[0]) == static.max_tokens


def test_contextual_table_averages_seen_tokens_and_leaves_a_fold_out():
    from rtic.score.fastpath import CONTEXT_PSEUDOCOUNT, TokenMeans

    means = TokenMeans(vocab=5, dims=2, folds=2)
    means.add(0, np.array([1, 1, 2]), np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0]]))
    means.add(1, np.array([1]), np.array([[5.0, 5.0]]))
    base = np.arange(10, dtype=np.float32).reshape(5, 2)
    means.fit_prior(base)  # too few frequent tokens to fit a map: the prior is the out-of-context table itself
    np.testing.assert_allclose(means.prior, base)
    k = CONTEXT_PSEUDOCOUNT
    table = means.table()
    np.testing.assert_allclose(table[1], ([9.0, 5.0] + k * base[1]) / (3 + k), rtol=1e-6)
    np.testing.assert_allclose(table[0], base[0])  # never seen: the prior
    np.testing.assert_allclose(means.table(leave_out=1)[1], ([4.0, 0.0] + k * base[1]) / (2 + k), rtol=1e-6)
    np.testing.assert_allclose(means.table(leave_out=0)[2], base[2])  # token 2 was only in fold 0


def test_default_risk_is_the_fewest_rescored_whose_firm_agreement_bound_reaches_the_target(distilled, settings, tmp_path, caplog):
    model = registry.open_model(None, settings)
    caplog.set_level(logging.INFO, logger="rtic.score.fastpath")
    scorer = FastScorer.for_model(model, settings, transformer=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "rtic.score.fastpath"]
    table = scorer.head.validation
    reaching = [row["risk"] for row in table if row["firm_agreement_low"] >= 0.97 or row["rescored"] >= 1]
    assert scorer.risk == reaching[0]
    assert any("for 97.0% of firms identical to the transformer" in line for line in lines)
    caplog.clear()
    strict = FastScorer.for_model(model, settings, transformer=None, agreement=0.999)
    assert strict.risk <= scorer.risk
    # A target that needs half the firms re-scored or more is slower than no fast path: said, in one warning.
    needed = strict.head.risk_for(0.999)["rescored"]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "no faster than classify without --fast" in r.getMessage()]
    assert len(warned) == (1 if needed >= 0.5 else 0)
    caplog.clear()
    FastScorer.for_model(model, settings, transformer=None, agreement=1.0)  # beyond the table: every firm re-scored
    assert any("needs 100% of firms re-scored" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert [row["rescored"] for row in table] == sorted(row["rescored"] for row in table) and table[-1]["rescored"] == 1.0
    register = write_register(tmp_path / "r.csv", ["a firm that builds batteries"])
    res = run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), "--fast", "--fast-agreement", "0.98", "--fast-risk", "0.1", home=settings.home)
    assert res.returncode == 2 and "not both" in res.stderr and res.stderr.strip().count("\n") == 0
    res = run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), "--fast", "--fast-agreement", "1.5", home=settings.home)
    assert res.returncode == 2 and "--fast-agreement is a share" in res.stderr


def test_a_register_without_the_text_column_is_one_line_for_classify_and_build(trained, settings, tmp_path):
    register = tmp_path / "names.csv"
    pd.DataFrame({"firm_id": ["A", "B"], "name": ["Acme", "Bolt"]}).to_csv(register, index=False)
    for args in (["classify", str(register), "--out", str(tmp_path / "o.parquet")], ["fastpath", "build", "--register", str(register)]):
        res = run_cli(*args, home=settings.home)
        assert res.returncode == 2, res.stderr
        assert f"register {register} has no column 'text' (columns: firm_id, name)" in res.stderr
        assert res.stderr.strip().count("\n") == 0


def test_agreement_per_firm_needs_the_whole_label_set():
    truth = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=bool)
    other = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    cells, firms = label_agreement(truth, other)
    assert cells == 9 / 12  # three wrong decisions of twelve
    assert firms == 2 / 4  # but two firms of four differ: one wrong decision is a wrong firm


def test_risk_is_of_any_label_change_so_several_near_decisions_add_up():
    cut, sigma = np.zeros(3), np.ones(3)
    one_near = np.array([[0.5, 5.0, -5.0]])
    two_near = np.array([[0.5, 0.5, -5.0]])
    r1, r2 = change_risk(one_near, cut, sigma)[0], change_risk(two_near, cut, sigma)[0]
    from scipy.stats import norm

    assert r1 == pytest.approx(norm.cdf(-0.5), abs=1e-5)  # the far decisions add almost nothing
    assert r2 == pytest.approx(1 - (1 - norm.cdf(-0.5)) ** 2, abs=1e-5)
    # A per-decision margin sees both firms alike (nearest decision 0.5 sigma away); per firm, two near decisions are riskier.
    assert r2 > r1
    risk = np.array([0.0, 0.2, 0.5, 0.9])
    assert rescore_mask(risk, 0.0).all() and not rescore_mask(risk, NOBODY).any()
    assert rescore_mask(risk, 0.5).tolist() == [False, False, True, True]


def test_escalation_table_rescores_whole_firms_and_measures_them_per_firm():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, size=(400, 4))
    fast = true + rng.normal(0, 0.5, size=true.shape)
    cut, sigma = np.zeros(4), np.full(4, 0.5)
    table = escalation_table(true, fast, sigma, cut)
    assert table[0]["risk"] == NOBODY and table[0]["rescored"] == 0.0 and table[-1]["rescored"] == 1.0
    assert table[-1]["firm_agreement"] == table[-1]["cell_agreement"] == 1.0  # everyone re-scored: the transformer's labels
    # each row re-scores the firms at or above its risk, and its per-firm share is that of whole label sets
    risk = change_risk(fast, cut, sigma)
    for row in table:
        near = rescore_mask(risk, row["risk"])
        final = np.where(near[:, None], true >= cut, fast >= cut)
        assert row["rescored"] == near.mean()
        assert row["firm_agreement"] == ((final == (true >= cut)).all(axis=1)).mean()
        assert row["firm_agreement_low"] <= row["firm_agreement"]
    firms = [row["firm_agreement"] for row in table]
    assert firms[0] < 0.9 < firms[-1]  # static alone is far from identical per firm; risk ordering recovers it
    # Ordering by risk beats re-scoring at random (which would leave (1 - rescored) of the differing firms).
    row = next(r for r in table if r["rescored"] >= 0.2)
    assert 1 - row["firm_agreement"] < 0.75 * (1 - firms[0]) * (1 - row["rescored"])


def test_risk_for_picks_the_fewest_rescored_whose_lower_bound_reaches_the_target():
    rows = [{"risk": NOBODY, "rescored": 0.0, "cell_agreement": 0.97, "firm_agreement": 0.80, "firm_agreement_low": 0.78},
            {"risk": 0.3, "rescored": 0.1, "cell_agreement": 0.99, "firm_agreement": 0.975, "firm_agreement_low": 0.965},
            {"risk": 0.1, "rescored": 0.3, "cell_agreement": 0.999, "firm_agreement": 0.99, "firm_agreement_low": 0.982},
            {"risk": 0.0, "rescored": 1.0, "cell_agreement": 1.0, "firm_agreement": 1.0, "firm_agreement_low": 0.99}]
    head = FastHead("m", "1", "k", ["a"], np.zeros((2, 1)), None, np.ones(1), 1.0, "c", 10, validation=rows)
    assert head.risk_for(0.97)["risk"] == 0.1  # the point estimate of 0.3 reaches 97%, its lower bound does not
    assert head.risk_for(0.995)["risk"] == 0.0  # beyond the table: everyone
    assert wilson_low(0.97, 2000) == pytest.approx(0.9616, abs=1e-3)


def test_the_static_pass_shared_by_worker_processes_gives_the_same_scores_and_labels(distilled, settings, tmp_path, caplog):
    texts = SEED["text"].iloc[800:1100].tolist()  # enough rows for the pool (2 x MIN_ROWS_PER_WORKER)
    model = registry.open_model(None, settings)
    alone = FastScorer.for_model(model, settings, transformer=None, workers=1)
    shared = FastScorer.for_model(model, settings, transformer=None, workers=2)
    try:
        shared.start(batch_rows=100)  # too few rows per worker: nothing started
        assert shared._pool is None
        shared.start(batch_rows=len(texts))
        assert len(shared._pool._processes) == 2  # started before the first batch, as classify does
        split = shared.logits(texts)
        assert shared._pool is not None  # the split really ran in worker processes
        np.testing.assert_allclose(split, alone.logits(texts), rtol=0, atol=1e-6)
        # A worker killed mid-run (out of memory, an operator): the batch is scored here instead, nothing is lost.
        os.kill(next(iter(shared._pool._processes)), signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="rtic.score.fastpath"):
            again = shared.logits(texts)
        assert "a static-pass worker stopped" in caplog.text and shared.workers == 1 and shared._pool is None
        np.testing.assert_allclose(again, split, rtol=0, atol=1e-6)
    finally:
        shared.close()
    # End to end: the same register with the static pass in this process and shared by two workers.
    register = write_register(tmp_path / "r.csv", texts)
    outputs = []
    for workers in ("1", "2"):
        res = run_cli("classify", str(register), "--out", str(tmp_path / f"w{workers}.parquet"), "--fast", "--fast-risk", "0.5",
                      "--chunk-rows", "300", "--fast-workers", workers, home=settings.home)
        assert res.returncode == 0, res.stderr
        assert "static-pass worker stopped" not in res.stderr  # the workers ran (`python -m rtic.cli` is not re-run by spawn)
        outputs.append(pd.read_parquet(tmp_path / f"w{workers}.parquet").drop(columns=["classified_at", "probability"]))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("extra, message", [
    (["--fast", "--fast-workers", "0"], "--fast-workers must be at least 1, got 0"),
    (["--fast-workers", "1", "--engine", "spark"], "--fast-workers: local engine only"),
])
def test_fast_workers_out_of_range_or_with_spark_is_one_line_exit_2(distilled, settings, tmp_path, extra, message):
    register = write_register(tmp_path / "r.csv", ["a firm that builds batteries"])
    res = run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), *extra, home=settings.home)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and message in res.stderr and "Traceback" not in res.stderr
