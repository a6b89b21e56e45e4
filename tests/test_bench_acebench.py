"ACEBench (English) scoring: every worked example of TOOLCALL_SCORING.md §2.6, the fixture files in the official layout, and `magicagent score acebench`."
import argparse, json
from pathlib import Path
import pytest
from magicagent.bench import acebench
from magicagent.bench.astparse import decode_ace, DecodeError
from magicagent.bench.harness import ace_evaluate
from magicagent.cli import parse
from magicagent.bench.harness import score_acebench

FIX = Path(__file__).parent / "fixtures" / "bench" / "acebench" / "data_all"

def item(cat, i=0): return acebench.ace_items(FIX, [cat])[i]

def valid(cat, text, i=0):
    it = item(cat, i)
    return acebench.ace_verdict(cat, it["gold"]["function"], it["gold"]["answer"], text)["valid"]

def test_normal_atom_number_1():
    assert valid("normal_atom_number", "Sure: [AutomationSystemCompatibilityCheck(systemID=9999, newDeviceModel='The XR-10 model')] done")
    assert not valid("normal_atom_number", "[AutomationSystemCompatibilityCheck(systemID='2435', newDeviceModel='XR10')]")
    assert not valid("normal_atom_number", "[AutomationSystemCompatibilityCheck(systemID=2435, newDeviceModel='XR10', radius=5)]")

def test_normal_atom_list_0():
    assert not valid("normal_atom_list", "[FamilyTripPlanner(kidsAges=['7', '5'])]")
    assert valid("normal_atom_list", "[FamilyTripPlanner(kidsAges=['5', '7'], interests='Space-Themes')]")

def test_normal_atom_object_short_0():
    assert valid("normal_atom_object_short", "[ArtStyleAnalyzer(context={'culture': 'Western Europe'})]")
    assert not valid("normal_atom_object_short", "[ArtStyleAnalyzer(context={'culture': 'Western', 'era': 'modern'})]")
    assert not valid("normal_atom_object_short", "[ArtStyleAnalyzer(context={})]")

def test_special_incomplete_1():
    assert not valid("special_incomplete", '["Missing necessary parameters (time) for the api (analyze_diplomatic_impact)"]')
    assert valid("special_incomplete", "Missing necessary parameters (time_period) for the api (analyze_diplomatic_impact)")

def test_special_irrelevant():
    assert valid("special_irrelevant", "This is beyond the limitations of the function.")
    assert not valid("special_irrelevant", "The Limitations Of The Function")       # case-sensitive

def test_multi_turn_user_adjust_0():
    items = acebench.ace_items(FIX, ["normal_multi_turn_user_adjust"])
    comps = ["[branding_evaluateMediaEngagement(brand='Acme', platform='Twitter')]",
             "Sure, [branding_evaluateMediaEngagement(brand='Acme', platform='Instagram')]"]
    r = ace_evaluate(items, comps)
    assert [x["valid"] for x in r["items"]] == [True, False]
    s = r["by_category"]["normal_multi_turn_user_adjust"]
    assert s["accuracy"] == 0.0 and s["process_accuracy"] == 0.5 and s["conversations"] == 1
    assert ace_evaluate(items, [comps[0], comps[1].replace("Sure, ", "")])["by_category"]["normal_multi_turn_user_adjust"]["accuracy"] == round(1 / 50, 3)

def test_decoding_rules():
    assert decode_ace("text [f(a=[1, 2])] more") == [{"f": {"a": [1, 2]}}]
    with pytest.raises(DecodeError): decode_ace("f(a=1)")          # a bare call is not a list
    assert decode_ace("[f(x='a b')]", multi_turn=True) == [{"f": {"x": "ab"}}]   # all whitespace goes, strings too

def test_numbers_get_no_value_check_and_dicts_compare_as_substrings():
    doc = [{"name": "g", "parameters": {"type": "dict", "properties": {"n": {"type": "number"}, "d": {"type": "dict"}, "b": {"type": "boolean"}}, "required": []}}]
    v = lambda text, ans: acebench.ace_verdict("normal_atom_bool", doc, ans, text)["valid"]
    assert v("[g(n=7)]", {"g": {"n": 3}})
    assert v("[g(d={'k': 15})]", {"g": {"d": {"k": 5}}})             # '5' in '15'
    assert v("[g(b='true')]", {"g": {"b": True}})                     # 'true' becomes a boolean
    assert v("[g(n=1)]", [{"g": {"n": "x"}}, {"g": {"n": 2}}])        # alternatives: one passes

def test_summary():
    s = acebench.ace_summary({c: 1.0 for c in acebench.NORMAL})
    assert s == {"normal": 1.0, "special": 0.0, "summary_official": 0.578}

def _args(argv): return parse("score", argv)

def test_score_acebench_cli(tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"id": "normal_atom_number_1", "result": "[AutomationSystemCompatibilityCheck(systemID=2435, newDeviceModel='XR10')]"}) + "\n")
    out = tmp_path / "o.json"
    a = _args(["acebench", "--category", "normal_atom_number", "--data", str(FIX / "data_en" / "data_normal_atom_number.json"),
               "--answers", str(FIX / "possible_answer" / "data_normal_atom_number.json"), "--result", str(res), "--out", str(out)])
    assert score_acebench(a) == 0
    assert json.loads(out.read_text())["items"] == [{"id": "normal_atom_number_1", "valid": True, "error": None}]

def test_score_acebench_cli_errors(tmp_path, capsys):
    x = tmp_path / "x.json"; x.write_text("[]")
    a = _args(["acebench", "--category", "normal_atom_bogus", "--data", str(x), "--answers", str(x), "--result", str(x), "--out", str(tmp_path / "o")])
    assert score_acebench(a) == 2 and "normal_atom_bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:       # a missing file is refused as the arguments are read
        _args(["acebench", "--category", "normal_atom_number", "--data", str(tmp_path / "missing.json"), "--answers", str(x), "--result", str(x), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "missing.json: no such file" in capsys.readouterr().err
