"Online environments (50_envs): real TextWorld games played to a win, the ALFWorld adapter's errors, the agent format and loop."
import json, os, time
import pytest

textworld = pytest.importorskip("textworld")
from magicagent.envs import (ALFWorldEnv, EnvState, TextWorldEnv, alfworld_games, agent_prompt, clean_observation, env_splits,
                             expert_commands, expert_samples, game_plan, make_game, make_games, match_action, parse_answer,
                             parse_knobs, rollout, think_mask, token_pieces, word_tokenizer, hf_generate, chat_ids, small_policy,
                             INVALID_PENALTY, WIN_REWARD)


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    "One real game of each kind used here: a cooking game (its walkthrough opens with `inventory`) and a coin-collector chain."
    d = tmp_path_factory.mktemp("games")
    return {"cooking": str(make_game("cooking", parse_knobs("recipe=1 take=1 go=1", "cooking"), 11, d / "cook.z8")),
            "coin": str(make_game("coin", parse_knobs("level=4", "coin"), 5, d / "coin.z8"))}


@pytest.mark.parametrize("kind", ["cooking", "coin"])
def test_walkthrough_wins_a_generated_game(games, kind):
    env = TextWorldEnv([games[kind]])
    st = env.reset(0)
    assert st.objective and st.admissible and not st.done and "$$" not in st.observation
    walk = env.walkthrough()
    assert walk
    for i, a in enumerate(walk):
        assert not st.done
        st = env.step(a)
    assert st.won and st.done and st.reward >= 0


def test_expert_commands_drop_looking_around_and_still_win(games):
    env = TextWorldEnv([games["cooking"]])
    env.reset(0)
    walk, cmds = env.walkthrough(), expert_commands(env, 0)
    assert "inventory" in walk and "inventory" not in cmds and len(cmds) < len(walk)
    env.reset(0)
    for c in cmds: st = env.step(c)
    assert st.won


def test_a_wrong_action_does_not_win(games):
    env = TextWorldEnv([games["coin"]])
    env.reset(0)
    st = env.step("dance wildly")
    assert not st.done and not st.won and st.observation


def test_same_seed_same_game(tmp_path):
    k = parse_knobs("level=3", "coin")
    a, b = make_game("coin", k, 7, tmp_path / "a.z8"), make_game("coin", k, 7, tmp_path / "b.z8")
    ja, jb = json.loads(a.with_suffix(".json").read_text()), json.loads(b.with_suffix(".json").read_text())
    assert ja["metadata"]["walkthrough"] == jb["metadata"]["walkthrough"] and ja["objective"] == jb["objective"]


def test_make_games_caches_and_replaces_another_plan(tmp_path):
    v = {"xpo_game_kind": "coin", "xpo_knobs": "level=2", "xpo_ood_knobs": "level=3", "xpo_sft_games": 1, "xpo_train_games": 1, "xpo_eval_games": 1, "seed": 1}
    plan = game_plan(v)
    assert plan["ood"]["knobs"] == {"level": 3} and len({s for p in plan.values() for s in p["seeds"]}) == 4
    g = make_games(plan, tmp_path, progress=False)
    stamp = {f: os.path.getmtime(f) for fs in g.values() for f in fs}
    assert make_games(plan, tmp_path, progress=False) == g
    assert stamp == {f: os.path.getmtime(f) for fs in g.values() for f in fs}      # nothing regenerated
    g2 = make_games(game_plan({**v, "seed": 2}), tmp_path, progress=False)
    assert all(os.path.exists(f) for fs in g2.values() for f in fs)
    assert not any(os.path.exists(f) for fs in g.values() for f in fs if f not in sum(g2.values(), []))


def test_tw_make_failure_names_the_game(tmp_path):
    with pytest.raises(RuntimeError, match="tw-make failed for bad.z8"):
        make_game("coin", {"level": 999}, 1, tmp_path / "bad.z8")


@pytest.mark.parametrize("text,kind,msg", [("rooms=3", "cooking", "no knob 'rooms'"), ("go=x", "cooking", "must be an integer"),
                                           ("open=maybe", "cooking", "must be yes or no"), ("level", "coin", "expected knob=value"),
                                           ("level=1", "minecraft", "unknown game generator")])
def test_parse_knobs_errors_name_the_key(text, kind, msg):
    with pytest.raises(ValueError, match=msg) as e: parse_knobs(text, kind, "xpo_knobs")
    assert "xpo_knobs" in str(e.value)


@pytest.mark.timeout(60)
def test_alfworld_missing_data_is_an_error_at_once(tmp_path):
    t0 = time.time()
    for where, msg in (("", "needs its data folder"), (tmp_path / "none", "does not exist"), (tmp_path, "json_2.1.1/valid_unseen")):
        with pytest.raises(FileNotFoundError, match=msg): alfworld_games(where, "ood")
    (tmp_path / "json_2.1.1" / "valid_unseen" / "task-1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no solvable game.tw-pddl"): alfworld_games(tmp_path, "ood")
    with pytest.raises(FileNotFoundError, match="needs its data folder"):
        env_splits({"xpo_env": "alfworld", "alfworld_data": None}, tmp_path)
    assert time.time() - t0 < 30


def test_alfworld_games_keeps_solvable_games(tmp_path):
    base = tmp_path / "json_2.1.1" / "train"
    for name, solvable, traj in (("a", True, True), ("b", False, True), ("c", True, False), ("movable-d", True, True)):
        d = base / name / "trial"; d.mkdir(parents=True)
        (d / "game.tw-pddl").write_text(json.dumps({"solvable": solvable}))
        if traj: (d / "traj_data.json").write_text("{}")
    assert [p.split("/")[-3] for p in alfworld_games(tmp_path, "train")] == ["a"]
    with pytest.raises(ValueError, match="no game files"): ALFWorldEnv([])


def test_clean_observation():
    raw = "\n  ____ \n |  $$\\\n\nWelcome!\n\n\n-= Attic =-\nDusty.\n\n>      -= Attic =-0/1"
    assert clean_observation(raw) == "Welcome!\n-= Attic =-\nDusty."
    assert clean_observation("You take it.\n\n\n>  ") == "You take it."


@pytest.mark.parametrize("action", ["go east", "take red potato from counter", "put ten-speed bike on table", "insert key into chest"])
def test_parse_answer_round_trip(action):
    assert parse_answer(f"<think>I will {action}.</think><action>{action}</action>") == action
    assert parse_answer(f"  <think>\n x \n</think>\n <action>\n{action.upper()}\n</action> \n") == action


@pytest.mark.parametrize("bad", ["go east", "<think>x</think>", "<action>go</action>", "<think>x</think><action></action>",
                                 "<think><think>x</think><action>go</action>", "<think>x</think><action>a</action><action>b</action>",
                                 "<action>go</action><think>x</think>", "<think>x</think><action>go</action> trailing"])
def test_parse_answer_rejects_broken_forms(bad):
    assert parse_answer(bad) is None


def test_match_action():
    assert match_action("Take  Red Potato", ["take red potato", "go east"]) == "take red potato"
    assert match_action("go west", ["go east"]) is None


def test_think_mask_with_bpe_and_word_tokenizers():
    from magicagent.models import smollm2_tokenizer
    ans = "<think>The coin is north; I go north.</think><action>go north</action>"
    wtok = word_tokenizer([ans, "user assistant"])
    for tok in (smollm2_tokenizer(), wtok):
        ids = tok(ans, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        pieces = token_pieces(tok, ids)
        m = think_mask(pieces)
        think = "".join(p for p, t in zip(pieces, m) if t)
        act = "".join(p for p, t in zip(pieces, m) if not t)
        assert think.startswith("<think>") and "</think>" in think and "go north</action>" in act and not m[-1]
    assert think_mask(["<think>", "never closed"]) == [True, True]
    assert think_mask(["<action>go</action>"]) == [False]


def test_word_tokenizer_round_trip_and_chat_template():
    texts = ["You see a ten-speed bike, a 'chest' and a coin.", "<think>I am in the attic.</think><action>take coin</action>", "user", "assistant"]
    tok = word_tokenizer(texts)
    for t in texts[:2]:
        assert tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t.lower()
    ids = chat_ids(tok, texts[0])
    assert tok.convert_ids_to_tokens(ids)[-2:] == ["<|im_start|>", "assistant"]
    assert tok.unk_token_id not in ids


def _scripted(cmds, tok):
    pos = [0] * len(cmds)
    def gen(prompts):
        live = [i for i in range(len(cmds)) if pos[i] < len(cmds[i])]
        assert len(live) == len(prompts)
        out = []
        for i in live:
            c = cmds[i][pos[i]]; pos[i] += 1
            text = "no tags at all" if c is None else f"<think>next: {c}</think><action>{c}</action>"
            out.append(tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return out
    return gen


def test_rollout_rewards_wins_and_penalises_invalid_answers(games):
    from magicagent.models import smollm2_tokenizer
    tok = smollm2_tokenizer()
    files = [games["coin"]]
    walk = expert_commands(TextWorldEnv(files), 0)
    T = len(walk) + 1                                   # the turn limit: the third episode answers without tags every turn
    plans = [walk, [None] + walk, [None] * T]
    eps = rollout(_scripted(plans, tok), tok, [TextWorldEnv(files) for _ in plans], [0, 0, 0], max_turns=T)
    assert [e.won for e in eps] == [True, True, False]
    assert eps[0].reward == WIN_REWARD and abs(eps[1].reward - (WIN_REWARD - INVALID_PENALTY)) < 1e-9
    assert eps[1].turns[0].action is None and len(eps[1].history) == len(walk)          # the invalid turn stepped nothing
    assert len(eps[2].turns) == T and abs(eps[2].reward + T * INVALID_PENALTY) < 1e-9 and eps[2].history == []
    assert all(any(t.think) for t in eps[0].turns)


def test_expert_samples_are_deterministic_and_well_formed(games):
    env = TextWorldEnv([games["coin"], games["cooking"]])
    a, b = expert_samples(env, [0, 1], seed=3), expert_samples(env, [0, 1], seed=3)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert all(s.task == "online" and parse_answer(s.target) == s.gold["action"] for s in a)
    assert "Prior to this step" in a[1].messages[0]["content"] and "Prior to this step" not in a[0].messages[0]["content"]


def test_agent_prompt_shows_the_last_two_steps():
    st = EnvState("find the coin", "-= Attic =-", ["go east", "look"])
    p = agent_prompt(st, [("o1", "a1"), ("o2", "a2"), ("o3", "a3")])
    assert "Observation 2: 'o2', Action 2: 'a2'" in p and "Observation 3: 'o3'" in p and "'o1'" not in p
    assert "already taken 3 step(s)" in p and "at step 4 and your current observation is: -= Attic =-" in p
    assert "['go east', 'look']" in p
    assert "Prior to this step" not in agent_prompt(st)


def test_hf_generate_stops_at_the_end_of_turn():
    import torch
    tok = word_tokenizer(["<think>go</think><action>go east</action>", "user assistant"])
    model = small_policy(tok, hidden_size=32, layers=1, seed=0)
    torch.manual_seed(0)
    out = hf_generate(model, tok, do_sample=True, max_new_tokens=8)([chat_ids(tok, "go"), chat_ids(tok, "go east go")])
    assert len(out) == 2 and all(0 < len(o) <= 8 for o in out)
    assert all(tok.eos_token_id not in o[:-1] for o in out)


def _alfworld_game(folder, split, name, goal_receptacle="DiningTable"):
    "A two-receptacle ALFWorld game: ALFWorld's real domain and grammar, a hand-written PDDL problem."
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH
    from magicagent.envs import ALFWORLD_SPLITS
    from pathlib import Path
    objs = {"agent1": "agent", "loc_bar_start": "location", "loc_bar_counter": "location", "loc_bar_table": "location",
            "CounterTop_bar_01": "receptacle", "DiningTable_bar_01": "receptacle", "Apple_bar_01": "object",
            "AppleType": "otype", "CounterTopType": "rtype", "DiningTableType": "rtype"}
    init = ["atLocation agent1 loc_bar_start", "receptacleAtLocation CounterTop_bar_01 loc_bar_counter",
            "receptacleAtLocation DiningTable_bar_01 loc_bar_table", "inReceptacle Apple_bar_01 CounterTop_bar_01",
            "objectAtLocation Apple_bar_01 loc_bar_counter", "pickupable Apple_bar_01", "objectType Apple_bar_01 AppleType",
            "receptacleType CounterTop_bar_01 CounterTopType", "receptacleType DiningTable_bar_01 DiningTableType",
            "canContain DiningTableType AppleType", "canContain CounterTopType AppleType"]
    problem = ("(define (problem p) (:domain alfred) (:objects " + " ".join(f"{o} - {t}" for o, t in objs.items()) + ") (:init "
               + " ".join(f"({f})" for f in init) + f") (:goal (exists (?r - receptacle) (and (inReceptacle Apple_bar_01 ?r) (receptacleType ?r {goal_receptacle}Type)))))")
    d = Path(folder) / "json_2.1.1" / ALFWORLD_SPLITS[split] / name / "trial_1"; d.mkdir(parents=True)
    grammar = Path(ALFRED_TWL2_PATH).read_text().replace("UNKNOWN GOAL", f"put an apple in {goal_receptacle.lower()}")
    (d / "game.tw-pddl").write_text(json.dumps({"pddl_domain": Path(ALFRED_PDDL_PATH).read_text(), "grammar": grammar,
                                                "pddl_problem": problem, "solvable": True}))
    (d / "traj_data.json").write_text("{}")


def test_alfworld_adapter_plays_a_pddl_game_to_a_win(tmp_path):
    pytest.importorskip("alfworld")
    for split, names in (("train", ["a", "b", "c"]), ("id", ["d"]), ("ood", ["e"])):
        for n in names: _alfworld_game(tmp_path, split, n)
    splits = env_splits({"xpo_env": "alfworld", "alfworld_data": str(tmp_path), "xpo_sft_games": 2, "xpo_train_games": 0, "xpo_eval_games": 0}, tmp_path)
    assert [len(splits[s]) for s in ("sft", "train", "id", "ood")] == [2, 1, 1, 1] and not set(splits["sft"]) & set(splits["train"])
    env = ALFWorldEnv(splits["train"])
    st = env.reset(0)
    assert st.objective == "put an apple in diningtable." and "go to countertop 1" in st.admissible and "help" not in st.admissible
    for a in env.walkthrough(): st = env.step(a)
    assert st.won and st.done
    samples = expert_samples(env, [0], seed=0)
    assert [s.gold["action"] for s in samples] == env.walkthrough() and "Your task is to" in samples[0].messages[0]["content"]
    with pytest.raises(ValueError, match="xpo_sft_games=3"):
        env_splits({"xpo_env": "alfworld", "alfworld_data": str(tmp_path), "xpo_sft_games": 3, "xpo_train_games": 0, "xpo_eval_games": 0}, tmp_path)
