import pytest
import yaml

from rtic.errors import RticError
from rtic.taxonomy import load_taxonomy, parse_taxonomy
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
