"Tool catalog, loader validation (fuzzed), dependency and parameter-sharing graphs."
import copy, json
import numpy as np
import pytest
import jsonschema
from hypothesis import given, settings, strategies as st, HealthCheck
from magicagent.synth.tools import (Tool, ToolError, load_catalog, load_tools, tool_from_dict, dependency_graph,
                                    parameter_graph, graph_stats, output_fields, GENERIC_PARAMS)

CATALOG = load_catalog()
BY_NAME = {t.name: t for t in CATALOG}


def test_catalog_size_and_domains():
    assert len(CATALOG) >= 300
    assert len({t.domain for t in CATALOG}) >= 12
    assert len(BY_NAME) == len(CATALOG)


def test_every_tool_is_documented_and_examples_fit_their_schema():
    for t in CATALOG:
        assert t.description.endswith(".") and " Returns " in t.description, t.name
        assert t.outputs, f"{t.name} has no output fields"
        for p, s in t.inputs.items():
            assert s.get("title") and s.get("description"), (t.name, p)
            assert s.get("examples"), (t.name, p)
            for v in s["examples"]:
                jsonschema.validate(v, {k: s[k] for k in ("type",)})
        for f, s in t.outputs.items():
            assert s.get("description"), (t.name, f)
        assert t.utterance and all("{" + p + "}" in t.utterance for p in t.required), t.name


def test_handles_flow_between_tools():
    "Outputs that feed other tools' required inputs: ids, dates, places."
    dg = dependency_graph(CATALOG)
    assert dg.edges["search_flights", "book_flight"]["fields"] == [["flight_id", "flight_id"]]
    assert dg.has_edge("get_current_location", "search_nearby_places")
    assert dg.has_edge("get_order_status", "track_package")
    assert graph_stats(dg)["cross_domain_edges"] > 100


def test_openai_roundtrip_and_flat_form():
    t = BY_NAME["book_flight"]
    o = t.to_openai()
    assert set(o) == {"type", "function"} and set(o["function"]) == {"name", "description", "parameters"}
    back = tool_from_dict(o)
    assert (back.name, back.parameters, back.returns["properties"]) == (t.name, t.parameters, {})
    flat = {"name": "x_tool", "description": "Does x.", "parameters": t.parameters, "returns": t.returns}
    assert tool_from_dict(flat).outputs == t.outputs


# --- malformed tools: every corruption gives a ToolError naming the tool and the field
CORRUPTIONS = [
    (lambda d: d["function"].pop("description"), "`description`"),
    (lambda d: d["function"].__setitem__("description", "  "), "`description`"),
    (lambda d: d["function"]["parameters"].__setitem__("type", "array"), "`parameters.type`"),
    (lambda d: d["function"]["parameters"]["properties"]["flight_id"].__setitem__("type", "str"), "`parameters.properties.flight_id.type`"),
    (lambda d: d["function"]["parameters"]["properties"]["flight_id"].pop("description"), "`parameters.properties.flight_id.description`"),
    (lambda d: d["function"]["parameters"]["required"].append("ghost"), "`parameters.required`"),
    (lambda d: d["function"]["parameters"].__setitem__("required", "flight_id"), "`parameters.required`"),
    (lambda d: d["function"]["parameters"]["properties"].__setitem__("seat", "14C"), "`parameters.properties.seat`"),
    (lambda d: d["returns"].__setitem__("type", "string"), "`returns.type`"),
    (lambda d: d["returns"]["properties"]["status"].__setitem__("type", 7), "`returns.properties.status.type`"),
    (lambda d: d.__setitem__("domain", ""), "`domain`"),
    (lambda d: d.__setitem__("utterance", "book {nothing}"), "`utterance`"),
    (lambda d: d["function"]["parameters"]["properties"]["flight_id"].__setitem__("minLength", -3), "`parameters"),
]

@pytest.mark.parametrize("corrupt,field", CORRUPTIONS)
def test_malformed_tool_names_tool_and_field(corrupt, field):
    raw = json.loads(json.dumps([x for x in json.load(open(__import__("magicagent.synth.tools", fromlist=["x"]).catalog_path()))
                                 if x["function"]["name"] == "book_flight"][0]))
    corrupt(raw)
    with pytest.raises(ToolError) as e: tool_from_dict(raw)
    assert "'book_flight'" in str(e.value) and field in str(e.value), str(e.value)


def test_bad_name_and_duplicates_and_bad_file(tmp_path):
    with pytest.raises(ToolError, match="field `name`"): tool_from_dict({"name": "has space", "description": "x"})
    o = BY_NAME["book_flight"].to_openai()
    with pytest.raises(ToolError, match="'book_flight': field `name` is duplicated"): load_tools([o, o])
    p = tmp_path / "t.json"; p.write_text("[{")
    with pytest.raises(ToolError, match="t.json: invalid JSON"): load_catalog(p)
    p.write_text(json.dumps({"tools": [o]}))
    assert [t.name for t in load_catalog(p)] == ["book_flight"]


names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
junk = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(["name", "description", "parameters", "returns", "domain", "utterance"]), value=junk)
def test_fuzz_loader_never_crashes_otherwise(key, value):
    "Any value in any field either loads or raises ToolError (never another exception)."
    d = {"name": "fuzz_tool", "description": "Fuzz.", "parameters": {"type": "object", "properties": {}, "required": []}}
    d[key] = value
    try: tool_from_dict(d)
    except ToolError as e: assert "fuzz_tool" in str(e) or "field `name`" in str(e)


# --- graphs
def test_dependency_edges_are_sound_and_complete():
    dg = dependency_graph(CATALOG)
    for a, b, e in dg.edges(data=True):
        A, B = BY_NAME[a], BY_NAME[b]
        for o, i in e["fields"]:
            assert o == i and i in B.required and A.outputs[o]["type"] == B.inputs[i]["type"]
    for B in CATALOG:          # completeness: every name+type match is an edge
        for r in B.required:
            for A in CATALOG:
                if A.name != B.name and r in A.outputs and A.outputs[r]["type"] == B.inputs[r]["type"]:
                    assert dg.has_edge(A.name, B.name)


def _pair():
    a = tool_from_dict({"name": "find_trip", "description": "Find a trip.", "parameters": {"type": "object", "properties": {}},
                        "returns": {"type": "object", "properties": {"trip_code": {"type": "string", "description": "Code of the trip."},
                                                                     "vendor_id": {"type": "string", "description": "Vendor."}}}})
    b = tool_from_dict({"name": "pay_trip", "description": "Pay a trip.", "parameters": {"type": "object", "required": ["journey_ref", "partner_id"],
                        "properties": {"journey_ref": {"type": "string", "description": "Reference of the journey."},
                                       "partner_id": {"type": "string", "description": "Partner."}}}})
    return a, b

def test_semantic_edges_follow_the_threshold():
    a, b = _pair()
    def emb(texts):   # trip_code and journey_ref get cosine 0.9; vendor_id and partner_id cosine 1 (but ids by name never mix)
        v = {"trip code": [1, 0, 0], "journey ref": [0.9, np.sqrt(1 - .81), 0], "vendor id": [0, 0, 1], "partner id": [0, 0, 1]}
        return np.array([v[t.split(":")[0]] for t in texts], dtype=np.float32)
    g = dependency_graph([a, b], embedder=emb, threshold=0.85)
    assert g.edges["find_trip", "pay_trip"]["fields"] == [["trip_code", "journey_ref"]]
    assert g.edges["find_trip", "pay_trip"]["kind"] == "semantic"
    assert not dependency_graph([a, b], embedder=emb, threshold=0.95).has_edge("find_trip", "pay_trip")
    assert not dependency_graph([a, b]).has_edge("find_trip", "pay_trip")


def test_semantic_edges_with_the_real_embedder():
    dg = dependency_graph(CATALOG, embedder="minilm", threshold=0.8)
    base = dependency_graph(CATALOG)
    assert set(base.edges) <= set(dg.edges)
    assert dg.has_edge("get_booking", "get_airport_transfer_quote")
    for a, b, e in dg.edges(data=True):
        for o, i in e["fields"]:
            assert not (o != i and o.endswith("_id") and i.endswith("_id"))


def test_parameter_graph():
    pg = parameter_graph(CATALOG)
    for a, b, e in pg.edges(data=True):
        assert e["weight"] == len(e["shared"])
        for p in e["shared"]:
            assert p not in GENERIC_PARAMS and p in BY_NAME[a].inputs and p in BY_NAME[b].inputs
    assert "city" in pg.edges["get_current_weather", "search_hotels"]["shared"]
    s = graph_stats(pg)
    assert s["nodes"] == len(CATALOG) and s["edges"] == pg.number_of_edges() and 0 < s["density"] < 1
