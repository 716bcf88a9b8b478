import pytest
import yaml

from rtic.errors import RticError
from rtic.config import DEFAULT_TAXONOMY
from rtic.taxonomy import SECTOR_KEYS, load_taxonomy, parse_taxonomy
from conftest import run_cli

NINE = ["ai_data", "clean_growth", "smart_cities_mobility", "ageing_society", "advanced_manufacturing",
        "fintech", "cybersecurity", "life_sciences", "space"]


def test_default_taxonomy_has_the_nine_sectors_with_verticals_and_phrases():
    tax = load_taxonomy()
    assert tax.sector_ids == NINE
    assert tax.version
    for sector in tax.sectors:
        assert sector.name and sector.description
        assert 2 <= len(tax.verticals_of(sector.id)) <= 6
        assert sector.include and sector.exclude


def _base():
    return {"version": "t1", "sectors": [{"id": "a", "name": "A", "description": "about a"},
                                        {"id": "b", "name": "B", "description": "about b"}]}


def test_duplicate_ids_are_reported():
    data = _base()
    data["sectors"].append({"id": "a", "name": "A again", "description": "x"})
    with pytest.raises(RticError, match="duplicate id 'a'"):
        parse_taxonomy(data)


def test_unknown_parent_is_reported():
    data = _base()
    data["verticals"] = [{"id": "a.x", "parent": "zzz", "name": "X", "description": "x"}]
    with pytest.raises(RticError, match="unknown parent 'zzz'"):
        parse_taxonomy(data)


def test_empty_description_and_missing_version_are_both_reported():
    data = _base()
    data["sectors"][1]["description"] = "  "
    del data["version"]
    with pytest.raises(RticError) as info:
        parse_taxonomy(data)
    assert "empty description" in str(info.value) and "version" in str(info.value)


def test_vertical_given_as_top_level_entry_with_parent():
    data = _base()
    data["sectors"].append({"id": "a.v", "parent": "a", "name": "V", "description": "v"})
    tax = parse_taxonomy(data)
    assert tax.sector_ids == ["a", "b"]
    assert [v.id for v in tax.verticals_of("a")] == ["a.v"]


def test_validate_cli_ok_and_errors(tmp_path, rtic_home):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_base()))
    ok = run_cli("taxonomy", "validate", str(good), home=rtic_home)
    assert ok.returncode == 0 and "valid" in ok.stdout

    bad = tmp_path / "bad.yaml"
    data = _base()
    data["sectors"][0]["id"] = "b"
    bad.write_text(yaml.safe_dump(data))
    res = run_cli("taxonomy", "validate", str(bad), home=rtic_home)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "duplicate id 'b'" in res.stderr
    assert "Traceback" not in res.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nsectors: [\n")
    res = run_cli("taxonomy", "validate", str(broken), home=rtic_home)
    assert res.returncode == 2 and "invalid YAML" in res.stderr


def test_show_lists_every_sector(rtic_home):
    res = run_cli("taxonomy", "show", home=rtic_home)
    assert res.returncode == 0
    for sector in NINE:
        assert sector in res.stdout


@pytest.mark.parametrize("bad", ["../../../escaped/pwned", "a/b", "..", ".hidden", "-rf", "Upper", "two words", "a..b", "tab\tid",
                                 "<script>", "x" * 65, "dot.", "é"])
def test_sector_ids_must_be_safe_slugs(bad):
    data = _base()
    data["sectors"].append({"id": bad, "name": "Bad", "description": "a sector with a hostile id"})
    with pytest.raises(RticError, match="not a safe id|longer than"):
        parse_taxonomy(data)
    data = _base()
    data["verticals"] = [{"id": bad, "parent": "a", "name": "Bad", "description": "a vertical with a hostile id"}]
    with pytest.raises(RticError, match="not a safe id|longer than"):
        parse_taxonomy(data)


def test_safe_slug_ids_are_accepted():
    data = _base()
    data["sectors"].append({"id": "quantum-tech_2", "name": "Q", "description": "quantum"})
    data["verticals"] = [{"id": "quantum-tech_2.sensing", "parent": "quantum-tech_2", "name": "S", "description": "sensing"}]
    assert parse_taxonomy(data).sector_ids == ["a", "b", "quantum-tech_2"]


def test_validate_cli_refuses_a_path_like_id(tmp_path, rtic_home):
    data = _base()
    data["sectors"][0]["id"] = "../../../escaped/pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(data))
    res = run_cli("taxonomy", "validate", str(path), home=rtic_home)
    assert res.returncode == 2 and "not a safe id" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_default_vertical_descriptions_are_whole():
    # The one-line {…} entries once cut their descriptions at the first comma ("NLP" + a junk key).
    tax = load_taxonomy()
    assert tax.sector("ai_data.language_technology").description == "NLP, speech and conversational AI."
    assert tax.sector("cybersecurity.defensive").description == "SOC, MDR, threat intelligence and incident response."
    raw = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    for entry in raw["sectors"] + raw["verticals"]:
        assert set(entry) <= set(SECTOR_KEYS), entry["id"]


def test_a_description_cut_at_a_comma_is_refused(tmp_path, rtic_home):
    text = yaml.safe_dump(_base(), sort_keys=False) + (
        "verticals:\n  - {id: a.nlp, parent: a, name: Language, description: NLP, speech and conversational AI.}\n")
    path = tmp_path / "cut.yaml"
    path.write_text(text)
    with pytest.raises(RticError, match=r"'a.nlp': unknown key\(s\) 'speech and conversational AI.' \(in a one-line"):
        load_taxonomy(path)
    res = run_cli("taxonomy", "validate", str(path), home=rtic_home)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "unknown key" in res.stderr, res.stderr
    path.write_text(text.replace("description: NLP, speech and conversational AI.", 'description: "NLP, speech and conversational AI."'))
    assert load_taxonomy(path).sector("a.nlp").description == "NLP, speech and conversational AI."


@pytest.mark.parametrize("where,key,value,needle", [
    ("top", "owner", "me", "top level: unknown key(s) 'owner'"),
    ("sector", "descripton", "typo", "'a': unknown key(s) 'descripton'"),
    ("top", "version", 2026.10, "'version' must be text in quotes, got the float 2026.1"),
    ("top", "version", 3, "'version' must be text in quotes"),
    ("top", "name", ["x"], "'name' must be text"),
    ("sector", "id", 7, "sectors[0]: id must be text"),
    ("sector", "name", 2030, "'a': name must be text, got int"),
    ("sector", "description", {"x": 1}, "'a': description must be text, got dict"),
    ("sector", "parent", True, "'a': parent must be text, got bool"),
    ("sector", "include", "one phrase", "'a': include must be a list of phrases"),
    ("sector", "exclude", ["ok", True, 3], "'a': exclude phrases must be text, got 'True', '3'"),
    ("sector", "expected_share", "1%", "'a': expected_share must be a number"),
    ("sector", "expected_share", True, "'a': expected_share must be a number"),
])
def test_unknown_keys_and_values_of_the_wrong_type_are_refused(where, key, value, needle):
    data = _base()
    (data if where == "top" else data["sectors"][0])[key] = value
    with pytest.raises(RticError) as info:
        parse_taxonomy(data)
    assert needle in str(info.value)


def test_every_wrong_key_and_type_is_reported_at_once():
    data = _base()
    data["sectors"][0]["name"] = 1
    data["sectors"][1]["colour"] = "red"
    with pytest.raises(RticError) as info:
        parse_taxonomy(data)
    assert "'a': name must be text" in str(info.value) and "'b': unknown key(s) 'colour'" in str(info.value)


def test_numbers_and_phrases_of_the_right_type_are_accepted():
    data = _base()
    data["sectors"][0].update(expected_share=1e-2, include=["3D printing"], exclude=[])
    data["sectors"][1]["expected_share"] = 0.5
    tax = parse_taxonomy(data)
    assert tax.sector("a").include == ("3D printing",) and tax.sector("a").expected_share == 0.01
