"""Tests for r1jax.rewards.novelty: canonical steps, the UCB novelty, LRU, state dicts."""

import itertools
import json
import math

import pytest

# Not "from r1jax.rewards import novelty": the package exports composite's stub function
# under that name (until the integration replaces it).
from r1jax.rewards.novelty import MAX_KEY_CHARS, NoveltyTracker, canonical_step, node_term
from r1jax.rewards.verifier import parse_solution

PATH_A = ("7*4=28", "28-5=23")
PATH_B = ("28-5=23", "7*4=28")
PATH_C = ("7*4=28", "28-6=22", "22+1=23")


@pytest.mark.parametrize(
    "variants",
    [
        ("7*4=28", " 7 * 4 = 28 ", "4*7=28", "7×4=28", "7.0*4=28.00", "007*4=28"),
        ("1200+300=1500", "1,200 + 300 = 1,500", "300+1200=1500.0"),
        ("2**3=8", "2^3=8", "2 ** 3 = 8"),
        ("0.5*2=1", ".5*2=1", "2*0.50=1"),
        ("10*9=90", "9*10=90"),
        ("0.25+0.5=0.75", "0.5+0.25=0.75", ".50+.250=.75"),
        ("7*4=28", "28=7*4", "28 = 4*7"),  # written result first: one node (review)
        ("26/2=13", "13=26/2"),
        # Notation is no novelty (fuzz review, session 29): LaTeX and "x" products,
        # implicit products, currency, redundant parentheses, a repeated last side.
        ("9*2=18", "9 x 2 = 18", "9 X 2 = 18", "9 \\times 2 = 18", "9 \\cdot 2 = 18"),
        ("9*2=18", "9(2) = 18", "(9)(2) = 18", "(9)2 = 18", "$9 * 2 = $18", "9 * \\$2 = 18"),
        ("9*2=18", "9 * 2 = (18)", "(9 * 2) = 18", "((9 * 2)) = ((18))", "9 * 2 = 18 = 18"),
        ("18/3=6", "18 \\div 3 = 6", "18 ÷ (3) = 6"),
        ("3000+500=3500", "3{,}000 + 500 = 3{,}500", "3\\,000+500=3\\,500", "3,000+500=3,500"),
    ],
)
def test_canonical_step_merges_surface_variants(variants):
    assert len({canonical_step(v) for v in variants}) == 1


@pytest.mark.parametrize(
    "a, b",
    [
        ("7*4=28=28", "28=28=7*4"),  # chains keep their order
        ("1/2=0.5", "0.5/1=1/2"),
        ("7-4=3", "4-7=-3"),  # non-commutative
        ("7*4=28", "7+4=11"),
        ("1 2=12", "1.2=1.2"),
        ("2*3*4=24", "4*3*2=24"),  # only a single operation is sorted
        ("(1+2)*(3+4)=21", "1+2*3+4=21"),  # only parentheses around a whole side go
        ("2(3+4)=14", "23+4=14"),
        ("x=28=28", "x=28"),  # a repeated side goes only after a computed first side
        ("50%*2=1", "50*2=1"),
        ("3{,}000+500=3{,}500", "3{,}0+500=3{,}500"),  # review: 3{,}000 is not 3{,}0
    ],
)
def test_canonical_step_keeps_distinct_steps_apart(a, b):
    assert canonical_step(a) != canonical_step(b)


@pytest.mark.parametrize(
    "step",
    [
        None,
        3,
        b"1=1",
        "",
        "\x00\ud800",
        "=" * 10_000,
        "9" * 100_000,
        "9" * 5000 + "+1",
        "٣*2",
        "(" * 5000,
    ],
)
def test_canonical_step_never_raises_and_is_bounded(step):
    out = canonical_step(step)
    assert isinstance(out, str) and len(out) <= MAX_KEY_CHARS


def test_canonical_step_long_keys_are_deterministic_digests():
    a, b = "1+" * 200 + "1=201", "1+" * 200 + "2=202"
    assert canonical_step(a) == canonical_step(a)
    assert canonical_step(a) != canonical_step(b)
    assert len(canonical_step(a)) == MAX_KEY_CHARS


def test_node_term_formula():
    assert node_term(0, 0) == node_term(50, 0) == 1.0
    assert node_term(1, 1) == pytest.approx(math.sqrt(math.log(3) / (2 * math.log(2))))
    assert node_term(10, 3) == pytest.approx(math.sqrt(math.log(12) / (4 * math.log(2))))
    assert node_term(1000, 1) == 1.0  # rarely taken branch of a busy parent: clipped
    # Rising with the parent's visits, falling with the node's own.
    assert node_term(20, 5) < node_term(200, 5)
    assert node_term(200, 50) < node_term(200, 5)


def test_first_seen_path_scores_one_and_wrong_scores_zero():
    t = NoveltyTracker()
    assert t.score_group("p", [(PATH_A, True), (PATH_A, False), (PATH_B, True)]) == [1, 0, 1]
    assert t.score_group("p", [(PATH_C, True), (PATH_C, False)])[1] == 0.0
    assert t.score_group("q", [(PATH_A, True)]) == [1.0]  # trees are per problem


def test_repeated_path_decays_monotonically():
    t = NoveltyTracker()
    scores = [t.score_group("p", [(PATH_A, True)])[0] for _ in range(200)]
    assert scores[0] == 1.0
    assert all(a > b for a, b in itertools.pairwise(scores))
    assert scores[1] == pytest.approx(node_term(1, 1))
    assert scores[-1] < 0.3


def test_novelty_is_the_mean_term_along_the_path():
    t = NoveltyTracker()
    for _ in range(3):
        t.score_group("p", [(PATH_A, True)])
    t.score_group("p", [(PATH_C, True)])
    # Root has 4 visits; "7*4=28" 4; "28-5=23" 3 (below 4); PATH_C's tail 1 each.
    # Leave-one-out: each member also sees the other one ("7*4=28" +1, root +1).
    want_a = (node_term(5, 5) + node_term(5, 3)) / 2
    want_new = (node_term(5, 5) + 1.0 + 1.0) / 3  # shared first step, then unseen
    got = t.score_group("p", [(PATH_A, True), (("7*4=28", "28+2=30", "30-7=23"), True)])
    assert got == pytest.approx([want_a, want_new])
    assert got[1] > got[0]


def test_empty_path_scores_zero_and_is_not_inserted():
    t = NoveltyTracker()
    assert t.score_group("p", [((), True), ([], True)]) == [0.0, 0.0]
    assert "p" not in t and len(t) == 0


def test_wrong_solutions_are_not_inserted_by_default():
    t = NoveltyTracker()
    t.score_group("p", [(PATH_A, False)] * 5)
    assert "p" not in t
    assert t.score_group("p", [(PATH_A, True)]) == [1.0]
    t2 = NoveltyTracker(insert_incorrect=True)
    t2.score_group("p", [(PATH_A, False)] * 5)
    assert t2.num_nodes("p") == 2
    assert t2.score_group("p", [(PATH_A, True)])[0] < 1.0


def test_order_within_group_does_not_matter():
    history = [[(PATH_A, True)], [(PATH_B, True), (PATH_A, True)]]
    group = [(PATH_A, True), (PATH_C, True), (PATH_B, False), (PATH_C, True), ((), True)]
    results = []
    for perm in itertools.permutations(range(len(group))):
        t = NoveltyTracker(max_nodes_per_problem=5)  # the cap binds: insertion order matters
        for g in history:
            t.score_group("p", g)
        scores = t.score_group("p", [group[i] for i in perm])
        unpermuted = [0.0] * len(group)
        for pos, i in enumerate(perm):
            unpermuted[i] = scores[pos]
        results.append((unpermuted, json.dumps(t.state_dict())))
    assert all(r == results[0] for r in results)
    scores = results[0][0]
    assert scores[1] == scores[3] > scores[0]  # duplicates in a group score the same
    assert scores[2] == scores[4] == 0.0


def test_surface_variants_share_nodes():
    t = NoveltyTracker()
    t.score_group("p", [(PATH_A, True)])
    variant = ("4 * 7 = 28", "28 - 5 = 23.0")
    assert t.score_group("p", [(variant, True)]) == [pytest.approx(node_term(1, 1))]


def test_lru_eviction_over_problems():
    t = NoveltyTracker(max_problems=2)
    t.score_group("a", [(PATH_A, True)])
    t.score_group("b", [(PATH_A, True)])
    t.score_group("a", [(PATH_B, False)])  # touching "a" makes "b" the oldest
    t.score_group("c", [(PATH_A, True)])
    assert t.problem_keys() == ["a", "c"]
    assert t.score_group("b", [(PATH_A, True)]) == [1.0]  # forgotten: novel again
    assert t.problem_keys() == ["c", "b"]


def test_node_cap_stops_expansion():
    t = NoveltyTracker(max_nodes_per_problem=3)
    t.score_group("p", [(PATH_C, True)])  # 3 nodes: full
    t.score_group("p", [(PATH_A, True)])  # shares "7*4=28"; "28-5=23" is dropped
    assert t.num_nodes("p") == 3
    # Count along the existing prefix still rose; the dropped step stays unseen.
    assert t.score_group("p", [(PATH_A, True)]) == [pytest.approx((node_term(2, 2) + 1) / 2)]


def test_max_path_steps_truncates_paths():
    t = NoveltyTracker(max_path_steps=2)
    long_path = [f"{i}+1={i + 1}" for i in range(50)]
    t.score_group("p", [(long_path, True)])
    assert t.num_nodes("p") == 2
    assert t.score_group("p", [(long_path[:2] + ["9*9=81"], True)])[0] < 1.0


def test_state_dict_round_trip_gives_identical_future_scores():
    t = NoveltyTracker(max_problems=3, max_nodes_per_problem=6)
    groups = [
        ("p", [(PATH_A, True), (PATH_C, True)]),
        ("q", [(PATH_B, True)]),
        ("p", [(PATH_A, True), (PATH_B, True)]),
        ("r", [(PATH_C, True)]),
        ("q", [(PATH_C, False)]),
    ]
    for key, g in groups:
        t.score_group(key, g)
    state = json.loads(json.dumps(t.state_dict()))
    assert state == t.state_dict()
    u = NoveltyTracker.from_state_dict(state)
    v = NoveltyTracker(max_problems=3, max_nodes_per_problem=6)
    v.load_state_dict(state)
    assert u.problem_keys() == v.problem_keys() == t.problem_keys() == ["p", "r", "q"]
    future = [
        ("s", [(PATH_A, True)]),  # evicts the oldest, which must be the same in all three
        ("p", [(PATH_A, True), (PATH_C, True), (("1+1=2",), True)]),
        ("q", [(PATH_B, True)]),
        ("r", [(PATH_C, True)]),
    ]
    for key, g in future:
        assert t.score_group(key, g) == u.score_group(key, g) == v.score_group(key, g)
    assert t.state_dict() == u.state_dict() == v.state_dict()


def test_load_state_dict_applies_smaller_limits():
    t = NoveltyTracker()
    for key in "abcd":
        t.score_group(key, [(PATH_C, True), (PATH_A, True)])
    small = NoveltyTracker(max_problems=2, max_nodes_per_problem=2)
    small.load_state_dict(t.state_dict())
    assert small.problem_keys() == ["c", "d"]
    assert small.num_nodes("d") == 2  # the oldest nodes kept: still a valid tree
    small.score_group("d", [(PATH_A, True)])  # and it keeps working


@pytest.mark.parametrize(
    "state",
    [
        None,
        {},
        {"version": 99, "problems": []},
        {"version": 1, "problems": [[1, {"parents": [-1], "steps": [""], "counts": [0]}]]},
        {
            "version": 1,
            "problems": [["p", {"parents": [-1, 5], "steps": ["", "a"], "counts": [1, 1]}]],
        },
        {"version": 1, "problems": [["p", {"parents": [0], "steps": [""], "counts": [0]}]]},
    ],
)
def test_load_state_dict_rejects_malformed_state(state):
    with pytest.raises((ValueError, TypeError)):
        NoveltyTracker().load_state_dict(state)


def test_works_with_verifier_steps():
    t = NoveltyTracker()
    steps = parse_solution("7*4=28\n28-5=23\n#### 23").steps
    assert t.score_group("gsm8k/17", [(steps, True)]) == [1.0]
    assert t.score_group("gsm8k/17", [(steps, True)])[0] < 1.0


def test_invalid_arguments():
    with pytest.raises(ValueError):
        NoveltyTracker(max_problems=0)
    with pytest.raises(ValueError):
        NoveltyTracker(max_nodes_per_problem=True)
    with pytest.raises(TypeError):
        NoveltyTracker().score_group(3, [(PATH_A, True)])


def test_idle_steps_do_not_form_a_path():
    from r1jax.rewards.novelty import progress_steps

    honest = ["7*4=28", "28-5=23"]
    assert progress_steps(honest, "23") == honest
    for idle in (["1001=1001"], ["1000+1=1001"], ["28+0=28"], ["28*1=28"]):
        assert progress_steps(idle + honest, "23") == honest
        assert progress_steps(honest[:1] + idle + honest[1:], "23") == honest
    assert progress_steps(honest + ["23+5=28"], "23") == honest  # a check after the fact
    assert progress_steps(["x", "", "=3"], "3") == []  # never raises on junk


@pytest.mark.parametrize(
    "steps, answer, kept",
    [
        (["12/1=12", "x=12=12", "1*12/1=12", "12+0-0=12"], "12", []),  # restatements
        (["10-5=5"], "5", [0]),  # these compute their result
        (["4/2=2"], "2", [0]),
        (["3-5=-2"], "-2", [0]),
        (["6-5=1", "1*11=11"], "11", [0, 1]),  # a computed 1 is no identity
        (["7*4=28", "28+0=28", "28-5=23"], "23", [0, 2]),  # but a computed result is
        (["13+2-2=13", "13*2/2=13", "(13+13)/2=13", "13*1*1=13"], "13", []),  # rewritten
        (["1/2+1/2=1", "3*(2/3)=2", "1+1=2"], "1+2", []),  # an expression answer uses nothing
        (["1/2+1/2=1", "3*(2/3)=2", "1+2=3"], "3", [0, 1, 2]),
        (["1+1=2", "2=2"], "13", []),  # an idle step passes no use on
        (["1+1=2", "2+5=7"], "13", []),
        (["1+1=2", "2*1=2"], "13", []),
        (["20/4=$5", "$5*3=$15"], "$15.", [0, 1]),  # dollars and percent are numbers
        (["40%+20%=60%"], "60%", [0]),
        (["6+7=13", "10+3=13"], "13", [1]),  # a recomputation: one use, one step
        (["6+7=13", "6+7=13", "13+1=14"], "14", [1, 2]),
        (["75*12/100=9", "25*36/100=9", "9+9=18"], "18", [0, 1, 2]),  # equal values
        (["2*7=14", "28-14=14", "14/2=7"], "7", [0, 1, 2]),
        (["5/9*3/4=5/12", "5/12+1/6=7/12"], "7/12", [0, 1]),  # fractions are terms
        (["1/2*4=2", "2*3=6"], "6", [0, 1]),
        (["3+4=7=7", "7*2=14"], "14", [0, 1]),  # a chain computes 7
        (["13=6+7"], "13", [0]),  # written the other way round: the result comes first
        (["7=3+4", "14=7*2"], "14", [0, 1]),
        (["13=13*1", "13=13", "13=(13+13)/2"], "13", []),  # reversed restatements
        (["x=6+7"], "13", []),  # no term on either side: no result
        (["13=26/2"], "13", [0]),
        (["1=1", "13=13*1"], "13", []),  # an identity computes nothing,
        (["1=1", "13*1=13"], "13", []),  # so 13*1 stays a restatement (review)
        (["0=0", "13=13+0"], "13", []),
        (["1/2=0.5", "13+0*0.5=13"], "13", []),  # a restatement whatever 0.5 is (review)
        (["1001=1001=1001"], "1001", []),  # the result beside itself (review, session 29)
        (["13*13/13=13", "13-13+13=13"], "13", []),
        (["(1/2)*2*2=2"], "2", [0]),  # a triangle's area: 2 beside 1 computes (GSM8K gold)
        (["6+7=13", "13+13=26"], "26", [0, 1]),  # an earlier result used twice computes
        (["1+1=2", "13*2/2=13"], "13", []),
        (["6-5=1", "11*1=11"], "11", [0, 1]),  # but a computed rate of 1 computes
        (["3+3=6", "6*2=12", "12/6=2"], "2", [0, 1, 2]),
    ],
)
def test_progress_steps_cases(steps, answer, kept):
    from r1jax.rewards.novelty import progress_steps

    assert progress_steps(steps, answer) == [steps[i] for i in kept]


def test_progress_steps_invalid_steps_use_but_are_never_kept():
    from r1jax.rewards.novelty import progress_steps

    steps = ["7*4=28", "28-5=24", "24+18=42"]
    assert progress_steps(steps, "42", [True, False, True]) == ["7*4=28", "24+18=42"]
    assert progress_steps(steps, "42", [False, True, True]) == ["28-5=24", "24+18=42"]


def test_padding_a_common_solution_with_fresh_idle_steps_earns_no_novelty():
    # Review finding: a fresh valid equation prepended to a common solution used to score
    # as an unseen path on every sample and beat the honest solution after ~5 repeats.
    from r1jax.rewards.novelty import progress_steps

    tracker = NoveltyTracker()
    honest = ["7*4=28", "28-5=23"]
    for r in range(20):
        padded = [f"{1000 + r}={1000 + r}", f"{2000 + r}+1={2001 + r}"] + honest
        a, b = tracker.score_group(
            "p", [(progress_steps(honest, "23"), True), (progress_steps(padded, "23"), True)]
        )
        assert a == b
    assert a < 0.5


def test_a_path_shared_within_the_group_is_less_novel_than_a_lone_one():
    t = NoveltyTracker()
    common, rare = PATH_A, ("7*4=28", "28+2=30", "30-7=23")
    got = t.score_group("p", [(common, True)] * 3 + [(rare, True)])
    assert got[0] == got[1] == got[2] < got[3]
    assert t.score_group("q", [(common, True)]) == [1.0]  # alone in a fresh tree


def test_progress_reads_whole_long_steps():
    """A step longer than a novelty key (``MAX_KEY_CHARS``) keeps its result and uses."""
    from r1jax.rewards.novelty import MAX_KEY_CHARS, progress_steps

    big = "+".join(["100000000000000000000"] * 6)
    steps = ["5+7=12", f"12*({big})=7200000000000000000000"]
    assert len(steps[1]) > MAX_KEY_CHARS
    assert progress_steps(steps, "7200000000000000000000") == steps


def test_a_value_only_annotation_gives_way_to_its_prose():
    """GSM8K's ``1.5 / .25 = <<6=6>>6``: the computation is in the prose."""
    from r1jax.rewards import FreeFormVerifier

    v = FreeFormVerifier()
    text = "It takes 1.5 / .25 = <<6=6>>6 trips.\n#### 6"
    assert v.parse(text).steps == ("1.5 / .25 = 6",)
    verdict = v.verify(text, "6")
    assert verdict.valid_steps == verdict.credited_steps == 1
