import json
import sqlite3

import pandas as pd
import pytest

from conftest import run_cli
from review_fixtures import review_explainer, review_labels, review_register  # noqa: F401 (fixtures)
from rtic.errors import RticError
from rtic.review.index import IndexSources, LabelsIndex, build_index, ensure_index
from rtic.review.store import ReviewStore, publish, unknown_sector_decisions


def assert_one_line_error(res, *needles):
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- store --------------------------------------------------------------------------------------
def test_decisions_are_append_only(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    first = store.record("F1", "clean_growth", "confirm", "alice", note="heat pumps", model_version="3")
    second = store.record("F1", "clean_growth", "reject", "bob", note="only sells boilers", model_version="3")
    assert [d.decision for d in store.history("F1")] == ["confirm", "reject"]
    assert store.latest("F1")[("F1", "clean_growth")].id == second.id
    for sql in ("UPDATE decisions SET decision = 'add'", "DELETE FROM decisions"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            with store.conn:
                store.conn.execute(sql)
    assert [d.id for d in store.history("F1")] == [first.id, second.id]
    with pytest.raises(RticError, match="reviewer"):
        store.record("F1", "clean_growth", "confirm", "  ")
    with pytest.raises(RticError, match="decision must be"):
        store.record("F1", "clean_growth", "maybe", "alice")


def labels_frame(rows):
    df = pd.DataFrame(rows, columns=["firm_id", "sector_id", "probability", "assigned"])
    return df.assign(model_name="m", model_version="7", taxonomy_version="t1", text_sha256="0" * 64, classified_at="2026-11-01T00:00:00+00:00")


def test_publish_applies_latest_decisions_and_keeps_extra_ones(tmp_path):
    labels = labels_frame([("A", "ai_data", 0.9, True), ("A", "fintech", 0.2, False), ("B", "ai_data", 0.55, True)])
    store = ReviewStore(tmp_path / "r.sqlite")
    store.record("A", "ai_data", "reject", "alice")
    store.record("A", "fintech", "add", "alice")
    store.record("B", "ai_data", "reject", "alice")
    store.record("B", "ai_data", "confirm", "bob")  # supersedes the reject
    store.record("C", "space", "add", "bob")  # a firm the labels file lacks
    store.record("A", "quantum", "add", "mallory")  # a sector the taxonomy lacks (stored before decisions were checked)
    pub = publish(labels, store.latest(), sector_ids=["ai_data", "fintech", "space"]).set_index(["firm_id", "sector_id"])
    assert not pub.loc[("A", "ai_data"), "assigned"] and pub.loc[("A", "ai_data"), "model_assigned"]
    assert pub.loc[("A", "fintech"), "assigned"] and pub.loc[("A", "fintech"), "source"] == "review"
    assert pub.loc[("B", "ai_data"), "assigned"] and pub.loc[("B", "ai_data"), "reviewer"] == "bob"
    assert pub.loc[("C", "space"), "assigned"] and pd.isna(pub.loc[("C", "space"), "probability"])
    assert len(pub) == 4 and "quantum" not in set(pub.reset_index()["sector_id"])
    # Without sector_ids the labels' own sectors are the taxonomy: neither space nor quantum is published.
    assert set(publish(labels, store.latest())["sector_id"]) == {"ai_data", "fintech"}
    assert [d.sector_id for d in unknown_sector_decisions(store.latest(), ["ai_data", "fintech", "space"])] == ["quantum"]


# -- index --------------------------------------------------------------------------------------
@pytest.fixture
def small_index(tmp_path):
    rows = []
    for i in range(30):
        p_ai = i / 30
        rows += [(f"F{i:03d}", "ai_data", p_ai, p_ai >= 0.5), (f"F{i:03d}", "space", 0.05, False)]
    labels = tmp_path / "labels.parquet"
    labels_frame(rows).to_parquet(labels)
    register = tmp_path / "register.csv"
    names = ["Orbital Data Ltd" if i == 7 else f"Firm Number {i}" for i in range(30)] + ["Unclassified Co"]
    pd.DataFrame({"firm_id": [f"F{i:03d}" for i in range(31)], "name": names, "text": [f"text {i}" for i in range(31)]}).to_csv(register, index=False)
    index = build_index(IndexSources(labels, register, margin=0.05), tmp_path / "idx.sqlite")
    return LabelsIndex(index, tmp_path / "reviews.sqlite"), labels, register


def test_index_firm_record_with_inferred_threshold(small_index):
    idx, _, _ = small_index
    firm = idx.firm("F015")
    assert firm.text == "text 15" and firm.model_version == "7"
    ai = next(l for l in firm.labels if l.sector_id == "ai_data")
    # Highest unassigned 14/30, lowest assigned 15/30: the inferred cut lies between them.
    assert 14 / 30 < ai.threshold <= 15 / 30 and ai.model_assigned and ai.near
    assert idx.firm("nope") is None
    assert idx.firm("F030").labels == []  # in the register, not classified: still found


def test_index_search_by_id_name_sector_and_review(small_index, tmp_path):
    idx, _, _ = small_index
    assert [r.firm_id for r in idx.search(q="f00")] == [f"F00{i}" for i in range(10)]
    assert [r.firm_id for r in idx.search(q="f0", after="F005", limit=3)] == ["F006", "F007", "F008"]
    assert [r.firm_id for r in idx.search(q="orbit")] == ["F007"]
    in_ai = [r.firm_id for r in idx.search(sector="ai_data", limit=100)]
    assert in_ai == [f"F{i:03d}" for i in range(15, 30)]
    assert [r.firm_id for r in idx.search(sector="ai_data", limit=5, after="F020")] == ["F021", "F022", "F023", "F024", "F025"]
    near = {r.firm_id for r in idx.search(review="near", limit=100)}
    assert near == {f"F{i:03d}" for i in range(30) if abs(i / 30 - (14.5 / 30)) <= 0.05}
    # A decision that agrees with the model clears "near"; one that disagrees is flagged.
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.record("F014", "ai_data", "reject", "alice")  # model: not assigned, agrees
    store.record("F015", "ai_data", "reject", "alice")  # model: assigned, disagrees
    store.record("F003", "ai_data", "add", "alice")
    near_after = {r.firm_id for r in idx.search(review="near", limit=100)}
    assert near_after == near - {"F014", "F015"}
    assert [r.firm_id for r in idx.search(review="disagree")] == ["F003", "F015"]
    in_ai = {r.firm_id for r in idx.search(sector="ai_data", limit=100)}
    assert "F003" in in_ai and "F015" not in in_ai
    assert "ai_data: reviewer and model disagree" in idx.search(q="F015")[0].reasons


def test_index_is_rebuilt_only_when_sources_change(small_index, tmp_path):
    _, labels, register = small_index
    sources = IndexSources(labels, register)
    path = ensure_index(sources, tmp_path / "auto.sqlite")
    built = path.stat().st_mtime_ns
    assert ensure_index(sources, path).stat().st_mtime_ns == built
    labels_frame([("Z", "ai_data", 0.9, True)]).to_parquet(labels)
    ensure_index(IndexSources(labels, register), path)
    assert LabelsIndex(path, tmp_path / "rv.sqlite").firm("Z") is not None


def test_index_refuses_a_file_that_is_not_labels(tmp_path):
    bad = tmp_path / "x.parquet"
    pd.DataFrame({"firm_id": ["1"]}).to_parquet(bad)
    with pytest.raises(RticError, match="no column"):
        build_index(IndexSources(bad), tmp_path / "i.sqlite")
    assert not (tmp_path / "i.sqlite").exists()


# -- explain ------------------------------------------------------------------------------------
def test_explain_cli_json(review_labels, review_register, rtic_home, trained, mini_labels):
    res = run_cli("explain", "EX003", "--labels", str(review_labels), "--register", str(review_register), "--json", home=rtic_home)
    assert res.returncode == 0, res.stderr
    ex = json.loads(res.stdout)
    assert ex["model_version"] == trained.version and ex["text_matches_labels"] is True
    labels = pd.read_parquet(review_labels)
    mine = labels[labels["firm_id"] == "EX003"].set_index("sector_id")
    assert {s["sector_id"]: s["probability"] for s in ex["sectors"]} == pytest.approx(mine["probability"].to_dict(), abs=1e-4)
    assert ex["evidence"], "a heat-pump installer has an assigned or near-miss sector"
    text = pd.read_csv(review_register, dtype=str).set_index("firm_id").loc["EX003", "text"]
    train_ids = set(pd.read_csv(mini_labels, dtype=str)["firm_id"])
    for ev in ex["evidence"]:
        assert ev["assigned"] == bool(mine.loc[ev["sector_id"], "assigned"])
        probs = [s["probability"] for s in ev["sentences"]]
        assert probs == sorted(probs, reverse=True)
        for s in ev["sentences"]:
            assert text[s["start"]:s["end"]] == s["text"]
        assert ev["neighbours"] and {n["firm_id"] for n in ev["neighbours"]} <= train_ids


def test_sentence_support_is_the_registered_models_score(review_labels, review_register, settings, review_explainer):
    from rtic.explain import explain, format_explanation

    ex = explain("EX004", settings, labels=review_labels, register=review_register, explainer=review_explainer)
    assert ex.evidence
    for ev in ex.evidence:
        top = ev.sentences[0]
        alone = review_explainer.score([top.text])[0][review_explainer.sector_ids.index(ev.sector_id)]
        assert alone == pytest.approx(top.probability, abs=1e-3)
    report = format_explanation(ex)
    assert "probability  threshold" in report and "nearest labelled training firms" in report and ex.evidence[0].sentences[0].text in report


def test_explain_reads_the_crawl_store_when_the_register_has_no_text(review_labels, settings, review_explainer, tmp_path):
    from rtic.explain import explain

    from rtic.crawl.store import Store

    store = tmp_path / "crawl.db"
    crawl = Store(store)  # the crawler's own store, filled as a crawl would
    crawl.add_sites([("EX004", "chargeloop.example", "https://chargeloop.example/")])
    crawl.start_site("EX004", "chargeloop.example", "https://chargeloop.example/", None)
    crawl.save_page("EX004", "https://chargeloop.example/about", final_url="https://chargeloop.example/about", seq=1, status=200,
                    kind="about", text="We run rapid EV charging hubs at retail parks.")
    crawl.save_page("EX004", "https://chargeloop.example/", final_url="https://chargeloop.example/", seq=0, status=200,
                    kind="home", text="ChargeLoop licenses charge-point management software to councils.")
    crawl.save_page("EX004", "https://chargeloop.example/missing", seq=2, status=404, kind="other", text="Not found")
    crawl.finish_site("EX004", verdict="ok")
    crawl.close()
    ex = explain("EX004", settings, labels=review_labels, store=store, explainer=review_explainer).to_dict()
    assert [p["url"] for p in ex["pages"]] == ["https://chargeloop.example/", "https://chargeloop.example/about"]
    assert ex["text_source"].startswith("crawl store") and ex["text_matches_labels"] is False
    assert any("changed since it was classified" in w for w in ex["warnings"])


def test_explain_user_errors(review_labels, review_register, rtic_home, tmp_path):
    assert_one_line_error(run_cli("explain", "EX003", "--labels", str(review_labels), home=rtic_home), "--register")
    assert_one_line_error(run_cli("explain", "NOPE", "--labels", str(review_labels), "--register", str(review_register), home=rtic_home), "NOPE", "not in labels")
    assert_one_line_error(run_cli("explain", "EX003", "--labels", str(tmp_path / "x.parquet"), "--register", str(review_register), home=rtic_home), "not found")
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite")
    assert_one_line_error(run_cli("explain", "EX003", "--labels", str(review_labels), "--store", str(bad), home=rtic_home), "crawl store")


# -- review CLI -----------------------------------------------------------------------------------
def test_review_cli_decide_publish_export(review_labels, review_register, rtic_home, tmp_path):
    reviews = str(tmp_path / "reviews.sqlite")
    labels = pd.read_parquet(review_labels)
    assigned = labels[labels["assigned"]].iloc[0]
    unassigned = labels[~labels["assigned"] & (labels["firm_id"] == assigned["firm_id"])].iloc[0]
    firm = assigned["firm_id"]
    common = ["--labels", str(review_labels), "--reviews", reviews]
    res = run_cli("review", "decide", firm, assigned["sector_id"], "reject", "--reviewer", "alice", "--note", "wrong", *common, home=rtic_home)
    assert res.returncode == 0, res.stderr
    res = run_cli("review", "decide", firm, unassigned["sector_id"], "add", "--reviewer", "bob", *common, home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert_one_line_error(run_cli("review", "decide", firm, unassigned["sector_id"], "confirm", "--reviewer", "bob", *common, home=rtic_home), "use 'add'")
    history = run_cli("review", "history", firm, "--reviews", reviews, home=rtic_home)
    assert "alice" in history.stdout and "bob" in history.stdout and assigned["model_version"] in history.stdout

    out = tmp_path / "published.parquet"
    res = run_cli("review", "publish", *common, "--out", str(out), home=rtic_home)
    assert res.returncode == 0, res.stderr
    pub = pd.read_parquet(out).set_index(["firm_id", "sector_id"])
    assert len(pub) == len(labels) and "2 labels changed by review" in res.stdout
    assert not pub.loc[(firm, assigned["sector_id"]), "assigned"] and pub.loc[(firm, unassigned["sector_id"]), "assigned"]

    export = tmp_path / "reviewed.csv"
    res = run_cli("review", "export", *common, "--register", str(review_register), "--out", str(export), home=rtic_home)
    assert res.returncode == 0, res.stderr
    rows = pd.read_csv(export, dtype=str, keep_default_na=False)
    assert list(rows.columns[:3]) == ["firm_id", "text", "sectors"] and list(rows["firm_id"]) == [firm]
    sectors = set(rows.iloc[0]["sectors"].split("|"))
    assert unassigned["sector_id"] in sectors and assigned["sector_id"] not in sectors
    # The export is a valid training file for the project's own reader.
    from rtic.labels import read_labels
    from rtic.taxonomy import load_taxonomy

    assert read_labels(export, load_taxonomy()).firm_ids == [firm]


def test_serve_requires_a_reviewer(review_labels, rtic_home):
    assert_one_line_error(run_cli("review", "serve", "--labels", str(review_labels), "--reviewer", " ", home=rtic_home), "reviewer")


def test_explain_without_labels_scores_the_text_now(review_labels, review_register, settings, review_explainer):
    from rtic.explain import explain

    ex = explain("EX003", settings, register=review_register, explainer=review_explainer)
    assert ex.labels_source == "scored now" and ex.model_version == review_explainer.ref.version
    stored = pd.read_parquet(review_labels).query("firm_id == 'EX003'").set_index("sector_id")["probability"].to_dict()
    # Same model, same text: equal up to the float noise of embedding one text alone instead of in a batch.
    assert {s["sector_id"]: s["probability"] for s in ex.sectors} == pytest.approx(stored, abs=0.01)


# -- decisions are checked; nothing outside the taxonomy is published ----------------------------------
def exceptions_of(labels):
    from rtic.firm_labels import exceptions_path

    return pd.read_csv(exceptions_path(labels), dtype=str, keep_default_na=False).set_index("firm_id")


def test_a_decision_must_name_a_firm_and_a_sector_the_labels_know(review_labels):
    from rtic.review.publish import decision_target

    labels = pd.read_parquet(review_labels)
    row = labels[labels["firm_id"] == "EX003"].iloc[0]
    target = decision_target(review_labels, "EX003", row["sector_id"])
    assert target.model_version == row["model_version"] and target.model_assigned == bool(row["assigned"])
    with pytest.raises(RticError, match="unknown firm F999"):
        decision_target(review_labels, "F999", row["sector_id"])
    with pytest.raises(RticError, match="unknown sector 'quantum'"):
        decision_target(review_labels, "EX003", "quantum")
    # A firm classify could not classify (in the exceptions file) may still be put in a known sector, never an unknown one.
    unclassified = exceptions_of(review_labels).index[0]
    assert decision_target(review_labels, unclassified, row["sector_id"]).model_assigned is None
    with pytest.raises(RticError, match="unknown sector"):
        decision_target(review_labels, unclassified, "quantum")


def test_publish_and_export_never_emit_a_sector_the_taxonomy_lacks(review_labels, review_register, tmp_path):
    from rtic.labels import read_labels
    from rtic.review.publish import export_file, publish_file
    from rtic.taxonomy import load_taxonomy

    labels = pd.read_parquet(review_labels)
    reviews = tmp_path / "reviews.sqlite"
    store = ReviewStore(reviews)  # as a store filled before decisions were checked
    store.record("EX003", "quantum", "add", "mallory")
    store.record("F999", "quantum", "add", "mallory")
    unassigned = labels[(labels["firm_id"] == "EX004") & ~labels["assigned"]].iloc[0]["sector_id"]
    store.record("EX004", unassigned, "add", "alice")
    store.close()
    result = publish_file(review_labels, reviews, tmp_path / "published.parquet")
    published = pd.read_parquet(result.out)
    assert result.n_unknown == 2 and result.n_decisions == 1 and result.n_changed == 1
    assert set(published["sector_id"]) == set(labels["sector_id"]) and len(published) == len(labels)
    exported = export_file(review_labels, reviews, tmp_path / "reviewed.csv", register=review_register)
    rows = pd.read_csv(exported.out, dtype=str, keep_default_na=False)
    assert list(rows["firm_id"]) == ["EX004"] and exported.n_unknown == 2
    assert read_labels(exported.out, load_taxonomy()).firm_ids == ["EX004"]  # no unknown sector for the reader to refuse

    only_unknown = tmp_path / "only_unknown.sqlite"
    ReviewStore(only_unknown).record("EX003", "quantum", "add", "mallory")
    with pytest.raises(RticError, match="nothing to export"):
        export_file(review_labels, only_unknown, tmp_path / "none.csv", register=review_register)
    assert not (tmp_path / "none.csv").exists()


# -- explain: evidence is content ----------------------------------------------------------------------
PAGE = ("Contact ChargeGrid Mobility\n"
        "Home | About | Fleet Charging | Contact\n"
        "ChargeGrid installs rapid EV charging hubs for bus and van fleets at their depots.\n"
        "Our software schedules every charger so vans leave full and the depot never exceeds its grid connection.\n"
        "ChargeGrid Mobility Ltd is registered in England and Wales, company number 01234567.\n"
        "© 2026 ChargeGrid Mobility Ltd. All rights reserved.")


def test_content_sentences_leave_out_titles_menus_and_registration_lines():
    from rtic.explain import content_text, split_sentences

    kept = [PAGE[a:b] for a, b in split_sentences(PAGE)]
    assert kept == ["ChargeGrid installs rapid EV charging hubs for bus and van fleets at their depots.",
                    "Our software schedules every charger so vans leave full and the depot never exceeds its grid connection."]
    assert content_text(PAGE) == "\n".join(kept)
    # Content that names a place is still content; an unpunctuated but ordinary sentence too.
    text = "Our API covers every residential address in England and Wales.\nwe now serve chains of grocers across the north"
    assert [text[a:b] for a, b in split_sentences(text)] == text.split("\n")


def test_explain_evidence_is_content_and_neighbours_show_their_text(review_explainer, settings, mini_labels, tmp_path):
    from rtic.explain import explain, format_explanation

    register = tmp_path / "register.csv"
    pd.DataFrame({"firm_id": ["CG1"], "name": ["ChargeGrid Mobility"], "text": [PAGE]}).to_csv(register, index=False)
    # Scored now by the real model; threshold lowered to make every sector a near miss, so each gets evidence.
    review_explainer_thresholds = dict(review_explainer.thresholds)
    try:
        review_explainer.thresholds = {s: 0.0 for s in review_explainer.sector_ids}
        ex = explain("CG1", settings, register=register, explainer=review_explainer)
    finally:
        review_explainer.thresholds = review_explainer_thresholds
    assert len(ex.evidence) == len(review_explainer.sector_ids)
    content = [line for line in PAGE.split("\n") if line.startswith(("ChargeGrid installs", "Our software"))]
    content_words = set(" ".join(content).lower().replace(".", " ").split())
    for ev in ex.evidence:
        assert ev.sentences and {s.text for s in ev.sentences} <= set(content)
        for term, _ in ev.terms:
            assert set(term.split()) <= content_words, (ev.sector_id, term)  # never "wales", "registered", "contact"
    train = pd.read_csv(mini_labels, dtype=str, keep_default_na=False).set_index("firm_id")["text"]
    neighbours = ex.evidence[0].neighbours
    assert neighbours
    for nb in neighbours:
        words = train[nb["firm_id"]].split()
        assert nb["text"].removesuffix(" …").split() == words[:15]
    assert neighbours[0]["text"] in format_explanation(ex)


def test_explain_says_why_a_firm_was_not_classified(review_labels, review_register, rtic_home):
    unclassified = exceptions_of(review_labels)
    firm = unclassified.index[0]
    res = run_cli("explain", firm, "--labels", str(review_labels), "--register", str(review_register), home=rtic_home)
    assert_one_line_error(res, firm, "not classified", unclassified.loc[firm, "reason"], "exceptions.csv")


def test_review_decide_cli_refuses_an_unknown_firm_or_sector_and_stores_nothing(review_labels, rtic_home, tmp_path):
    reviews = tmp_path / "reviews.sqlite"
    sector = pd.read_parquet(review_labels)["sector_id"].iloc[0]
    common = ["--reviewer", "mallory", "--labels", str(review_labels), "--reviews", str(reviews)]
    assert_one_line_error(run_cli("review", "decide", "F999", sector, "add", *common, home=rtic_home), "unknown firm F999")
    assert_one_line_error(run_cli("review", "decide", "EX003", "quantum", "add", *common, home=rtic_home), "unknown sector 'quantum'")
    res = run_cli("review", "decide", "EX003", "quantum", "add", "--reviewer", "mallory", "--reviews", str(reviews), home=rtic_home)
    assert res.returncode == 2 and "--labels" in res.stderr  # nothing to check against: refused
    assert ReviewStore(reviews).frame().empty
