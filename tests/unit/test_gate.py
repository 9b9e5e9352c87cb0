import math
import random
import re
import statistics

import pytest
from pydantic import ValidationError

from flagrelease.perf_metrics import RequestTrace, summarize
from flagrelease.results import QuestionResult, per_question_means, within_variance
from flagrelease.steps.gate import (
    BenchScore,
    GatePolicy,
    PerfRatio,
    decide,
    judge_accuracy,
    judge_perf,
    perf_ratios,
    perf_undecided,
)

CLASSIC = GatePolicy(rule="classic")
STATISTICAL = GatePolicy()

# The reference card, H100-CUDA vs FlagOS-Ascend. The card gives no sizes; AIME (30) and GPQA
# diamond (198) are fixed by the benchmarks, the others are assumed: MMLU's 14042-question test
# set, MuSR's 756, LiveBench taken as 1000.
CARD = {
    "LIVEBENCH": (0.501, 0.502, 1000),
    "AIME": (0.700, 0.733, 30),
    "GPQA": (0.410, 0.424, 198),
    "MMLU": (0.669, 0.670, 14042),
    "MUSR": (0.590, 0.623, 756),
}
# Unpaired SE = sqrt((p1 q1 + p2 q2) / n), worked by hand:
#   LIVEBENCH sqrt((0.249999 + 0.249996) / 1000) = 0.022361  -> [-0.0428, +0.0448]  PASS
#   AIME      sqrt((0.21 + 0.195711) / 30)       = 0.116291  -> [-0.1949, +0.2609]  INCONCLUSIVE
#   GPQA      sqrt((0.2419 + 0.244224) / 198)    = 0.049550  -> [-0.0831, +0.1111]  INCONCLUSIVE
#   MMLU      sqrt((0.221439 + 0.2211) / 14042)  = 0.005614  -> [-0.0100, +0.0120]  PASS
#   MUSR      sqrt((0.2419 + 0.234871) / 756)    = 0.025113  -> [-0.0162, +0.0822]  PASS
CARD_SE = {"LIVEBENCH": 0.022361, "AIME": 0.116291, "GPQA": 0.049550, "MMLU": 0.005614, "MUSR": 0.025113}
CARD_STATISTICAL = {"LIVEBENCH": "PASS", "AIME": "INCONCLUSIVE", "GPQA": "INCONCLUSIVE", "MMLU": "PASS", "MUSR": "PASS"}


def card_scores():
    return {name: (BenchScore(score=ref, n=n), BenchScore(score=cand, n=n)) for name, (ref, cand, n) in CARD.items()}


def questions(n, correct, wrong=()):
    """n question ids; those in `correct` score 1 unless also in `wrong`."""
    return {f"q{i}": float(i in correct and i not in wrong) for i in range(n)}


def test_card_passes_the_classic_rule():
    report = decide(card_scores(), [], CLASSIC)
    assert [b.verdict for b in report.accuracy] == ["PASS"] * 5
    assert (report.verdict, report.release) == ("PASS", True)
    assert {b.rule for b in report.accuracy} == {"classic"}


def test_card_under_the_statistical_rule():
    report = decide(card_scores(), [], STATISTICAL)
    got = {b.benchmark: b for b in report.accuracy}
    assert {name: b.verdict for name, b in got.items()} == CARD_STATISTICAL
    for name, b in got.items():
        ref, cand, _ = CARD[name]
        assert b.diff == pytest.approx(cand - ref)
        assert b.se == pytest.approx(CARD_SE[name], abs=1e-6)
        assert (b.ci_low, b.ci_high) == pytest.approx((b.diff - 1.96 * b.se, b.diff + 1.96 * b.se))
        assert (b.rule, b.se_method) == ("statistical", "unpaired")
    assert (report.verdict, report.release) == ("INCONCLUSIVE", False)
    assert report.reason == "inconclusive (blocks release): AIME, GPQA"


def test_inconclusive_explains_the_noise():
    ref, cand = card_scores()["AIME"]
    reason = judge_accuracy("AIME", ref, cand, STATISTICAL).reason
    assert "too noisy to decide: n=30 gives SE ≈ 0.116" in reason
    assert "[-0.195, +0.261] straddles -0.050" in reason
    # SE must fall to 0.083 / 1.96 from 0.116: n = 30 * (1.96 * 0.116291 / 0.083)^2 = 226.2
    assert "about 227 questions would decide it" in reason


def test_inconclusive_need_not_block():
    report = decide(card_scores(), [], GatePolicy(inconclusive_blocks=False))
    assert (report.verdict, report.release) == ("INCONCLUSIVE", True)
    assert "does not block" in report.reason


def test_classic_fails_a_small_benchmark_the_statistical_rule_cannot_judge():
    ref, cand = BenchScore(score=0.70, n=30), BenchScore(score=0.60, n=30)
    assert judge_accuracy("AIME", ref, cand, CLASSIC).verdict == "FAIL"
    # SE sqrt((0.21 + 0.24) / 30) = 0.12247 -> [-0.340, +0.140]
    stat = judge_accuracy("AIME", ref, cand, STATISTICAL)
    assert stat.verdict == "INCONCLUSIVE"
    assert stat.se == pytest.approx(0.122474, abs=1e-6)


def test_classic_drop_of_exactly_the_margin_passes():
    # 0.70 - 0.75 is -0.05000000000000004 in floating point
    ref = BenchScore(score=0.75, n=100)
    assert judge_accuracy("X", ref, BenchScore(score=0.70, n=100), CLASSIC).verdict == "PASS"
    assert judge_accuracy("X", ref, BenchScore(score=0.6999, n=100), CLASSIC).verdict == "FAIL"


def test_large_unpaired_drop_fails():
    # SE sqrt((0.16 + 0.21) / 2000) = 0.013601 -> [-0.1267, -0.0733], all below -0.05
    b = judge_accuracy("MMLU", BenchScore(score=0.80, n=2000), BenchScore(score=0.70, n=2000), STATISTICAL)
    assert b.verdict == "FAIL"
    assert b.se == pytest.approx(0.013601, abs=1e-6)
    assert b.ci_high == pytest.approx(-0.073342, abs=1e-6)
    assert "a real drop" in b.reason


def test_paired_se_is_much_smaller_and_decides():
    # 200 questions, reference right on q0..q119 (0.60); the candidate loses q0..q3 (0.58).
    # Differences: four -1, 196 zeros; mean -0.02, sum of squared deviations 4(0.98²) + 196(0.02²) = 3.92,
    # sd sqrt(3.92 / 199) = 0.140351, SE 0.140351 / sqrt(200) = 0.009924 -> [-0.0395, -0.0005]: PASS.
    ref_q, cand_q = questions(200, range(120)), questions(200, range(120), wrong=range(4))
    ref = BenchScore(score=0.60, n=200, per_question=ref_q)
    paired = judge_accuracy("GPQA", ref, BenchScore(score=0.58, n=200, per_question=cand_q), STATISTICAL)
    assert (paired.se_method, paired.verdict) == ("paired", "PASS")
    assert paired.se == pytest.approx(0.009924, abs=1e-6)
    assert paired.ci_low == pytest.approx(-0.039452, abs=1e-6)
    # Unpaired: sqrt((0.24 + 0.2436) / 200) = 0.049173 -> [-0.116, +0.076]: the same data cannot decide.
    unpaired = judge_accuracy("GPQA", ref, BenchScore(score=0.58, n=200), STATISTICAL)
    assert (unpaired.se_method, unpaired.verdict) == ("unpaired", "INCONCLUSIVE")
    assert unpaired.se == pytest.approx(0.049173, abs=1e-6)
    assert paired.se < unpaired.se / 4


def test_paired_drop_beyond_the_margin_fails():
    # 400 questions, reference right on 300 (0.75), candidate loses 40 of them (0.65).
    # Differences: forty -1, 360 zeros; squared deviations 40(0.9²) + 360(0.1²) = 36,
    # SE sqrt(36 / 399) / 20 = 0.015019 -> [-0.1294, -0.0706]: FAIL.
    ref = BenchScore(score=0.75, n=400, per_question=questions(400, range(300)))
    cand = BenchScore(score=0.65, n=400, per_question=questions(400, range(300), wrong=range(40)))
    b = judge_accuracy("MUSR", ref, cand, STATISTICAL)
    assert (b.se_method, b.verdict) == ("paired", "FAIL")
    assert b.se == pytest.approx(0.015019, abs=1e-6)


def test_different_question_ids_fall_back_to_unpaired():
    ref_q = questions(200, range(120))
    cand_q = questions(200, range(120), wrong=range(4))
    cand_q["other"] = cand_q.pop("q199")
    b = judge_accuracy(
        "GPQA",
        BenchScore(score=0.60, n=200, per_question=ref_q),
        BenchScore(score=0.58, n=200, per_question=cand_q),
        STATISTICAL,
    )
    assert b.se_method == "unpaired"
    assert b.se == pytest.approx(0.049173, abs=1e-6)


def test_per_question_count_must_match_n():
    with pytest.raises(ValidationError, match="n=10 but 9"):
        BenchScore(score=0.5, n=10, per_question=questions(9, range(5)))


def level(*pairs: float, c: int = 4, total: float | None = None) -> PerfRatio:
    """A level measured in pairs of windows with these candidate / reference ratios."""
    mean = math.exp(statistics.fmean(math.log(r) for r in pairs))
    return PerfRatio(
        max_concurrency=c,
        input_len=128,
        output_len=32,
        output_throughput=mean,
        total_token_throughput=total or mean,
        pair_ratios=list(pairs),
    )


# Five pairs each; the interval is exp(mean ± t(0.975, 4) · sd / sqrt(5)) on the log ratios.
@pytest.mark.parametrize(
    "pairs,verdict",
    [
        ((1.02, 0.97, 1.01, 0.99, 1.03), "PASS"),  # identical stacks, a quiet host: [0.97, 1.04]
        ((1.10, 0.92, 1.05, 0.88, 1.00), "PASS"),  # identical stacks, a noisy one: [0.88, 1.08]
        ((0.52, 0.49, 0.55, 0.50, 0.51), "FAIL"),  # half the speed: [0.48, 0.55]
        ((0.98, 0.72, 0.93, 0.70, 0.90), "INCONCLUSIVE"),  # [0.69, 1.00] straddles 0.8
    ],
)
def test_perf_level_is_judged_on_its_interval(pairs, verdict):
    judged = judge_perf(level(*pairs), STATISTICAL)
    assert judged.verdict == verdict, judged.reason
    assert judged.ci_low <= level(*pairs).output_throughput <= judged.ci_high
    if verdict == "INCONCLUSIVE":
        assert "straddles 0.80" in judged.reason and "pairs would decide it" in judged.reason


def test_the_interval_matches_students_t_by_hand():
    # logs of (1.1, 0.9, 1.0): mean -0.00337, sd 0.10034; t(0.975, 2) = 4.3027
    judged = judge_perf(level(1.1, 0.9, 1.0), STATISTICAL)
    assert judged.ci_low == pytest.approx(math.exp(-0.00337 - 4.3027 * 0.10034 / math.sqrt(3)), rel=1e-3)
    assert judged.ci_high == pytest.approx(math.exp(-0.00337 + 4.3027 * 0.10034 / math.sqrt(3)), rel=1e-3)


def test_one_pair_cannot_pass_the_statistical_rule_but_can_the_classic_one():
    assert judge_perf(level(0.95), STATISTICAL).verdict == "INCONCLUSIVE"
    assert judge_perf(level(0.95), CLASSIC).verdict == "PASS"
    assert judge_perf(level(0.75), CLASSIC).verdict == "FAIL"


def test_classic_takes_the_worse_of_output_and_total():
    assert judge_perf(level(0.95, 0.97, total=0.79), CLASSIC).verdict == "FAIL"


def test_perf_threshold_is_a_policy():
    pairs = (0.86, 0.84, 0.85, 0.86, 0.84)
    assert judge_perf(level(*pairs), GatePolicy(perf_min_ratio=0.9)).verdict == "FAIL"
    assert judge_perf(level(*pairs), GatePolicy(perf_min_ratio=0.8)).verdict == "PASS"


def test_one_slow_level_fails_the_release_under_both_rules():
    perf = [level(0.95, 0.97, 0.96, c=1), level(0.60, 0.62, 0.61, c=4)]
    for policy in (CLASSIC, STATISTICAL):
        report = decide(card_scores(), perf, policy)
        assert [p.verdict for p in report.perf] == ["PASS", "FAIL"]
        assert (report.verdict, report.release) == ("FAIL", False)
        assert "perf c=4 128/32" in report.reason


def test_an_undecided_level_blocks_the_release():
    report = decide({}, [level(0.95, 0.70, 0.90, 0.65, 0.85)], STATISTICAL)
    assert (report.verdict, report.release) == ("INCONCLUSIVE", False)
    assert "perf c=4 128/32" in report.reason


def test_fail_outranks_inconclusive():
    scores = card_scores() | {"MMLU": (BenchScore(score=0.80, n=2000), BenchScore(score=0.70, n=2000))}
    report = decide(scores, [], STATISTICAL)
    assert (report.verdict, report.reason) == ("FAIL", "failed: MMLU")


def test_nothing_to_gate_on_is_refused():
    with pytest.raises(ValueError, match="nothing to gate on"):
        decide({}, [], STATISTICAL)


def result(concurrency, duration_s):
    """One request of 100 prompt + 50 output tokens: throughput 50 / duration, total 150 / duration."""
    trace = RequestTrace(prompt_len=100, output_len=50, start=0.0, ttft_s=0.1, latency_s=0.5, success=True)
    settings = dict(max_concurrency=concurrency, request_rate=math.inf, num_prompts=1, input_len=100, output_len=50)
    return summarize([trace], duration_s, settings)


def test_perf_ratios_pair_the_windows_level_by_level():
    reference = [[result(4, 1.0), result(1, 1.0)], [result(4, 1.0), result(1, 2.0)]]
    candidate = [[result(1, 0.5), result(4, 1.25)], [result(1, 1.0), result(4, 1.0)]]
    ratios = perf_ratios(reference, candidate)
    assert [(r.max_concurrency, r.pair_ratios) for r in ratios] == [
        (1, [pytest.approx(2.0), pytest.approx(2.0)]),
        (4, [pytest.approx(0.8), pytest.approx(1.0)]),
    ]
    assert ratios[1].output_throughput == pytest.approx(math.sqrt(0.8))  # geometric mean


def test_perf_ratios_refuse_missing_levels_and_unpaired_windows():
    with pytest.raises(ValueError, match="levels differ"):
        perf_ratios([[result(1, 1.0), result(4, 1.0)]], [[result(1, 1.0)]])
    with pytest.raises(ValueError, match="pairs differ"):
        perf_ratios([[result(1, 1.0)], [result(1, 1.0)]], [[result(1, 1.0)]])


# avg@k: a question's k samples are one cluster.


def sampled(probabilities: list[float], k: int, rng: random.Random) -> list[QuestionResult]:
    """k samples of each question, correct with the question's own probability."""
    return [
        QuestionResult(id=f"q{i}", expected="A", answer="A", correct=rng.random() < p, attempts=1, sample=s)
        for i, p in enumerate(probabilities)
        for s in range(k)
    ]


def side(results: list[QuestionResult], k: int) -> BenchScore:
    means = per_question_means(results)
    return BenchScore(
        score=sum(means.values()) / len(means),
        n=len(means),
        per_question=means,
        samples=k,
        within_var=within_variance(results),
    )


def test_avg_at_k_se_counts_questions_not_samples():
    """15 questions always right and 15 always wrong, 4 samples each: 120 answers, but the
    spread is that of 30 questions. Treating the samples as 120 questions would halve the SE."""
    results = [
        QuestionResult(id=f"q{i}", expected="A", answer="A", correct=i < 15, attempts=1, sample=s)
        for i in range(30)
        for s in range(4)
    ]
    candidate = side(results, 4)
    assert (candidate.score, candidate.within_var) == (0.5, 0.0)
    b = judge_accuracy("AIME", BenchScore(score=0.5, n=30), candidate, STATISTICAL)
    assert b.se_method == "unpaired"
    assert b.se == pytest.approx(math.sqrt(0.25 / 30 + 0.25 / 30))  # not sqrt(0.25/30 + 0.25/120)
    assert b.reason.startswith("AIME avg@4 0.500 vs reference 0.500")


def test_one_sample_per_question_keeps_the_binomial_se():
    ref = BenchScore(score=0.6, n=10, per_question=questions(10, range(6)))
    cand = BenchScore(score=0.5, n=10, per_question={f"x{i}": float(i < 5) for i in range(10)})  # other ids
    b = judge_accuracy("X", ref, cand, STATISTICAL)
    assert (b.se_method, b.se) == ("unpaired", pytest.approx(math.sqrt((0.24 + 0.25) / 10)))


def test_within_variance_of_samples():
    rows = [  # q0: 1 of 4 right, q1: 4 of 4
        QuestionResult(id=f"q{i}", expected="A", answer="A", correct=c, attempts=1, sample=s)
        for i, answers in enumerate([(1, 0, 0, 0), (1, 1, 1, 1)])
        for s, c in enumerate(answers)
    ]
    assert per_question_means(rows) == {"q0": 0.25, "q1": 1.0}
    assert within_variance(rows) == pytest.approx((0.25 * 0.75 * 4 / 3 + 0) / 2)


def mean_se_squared(probabilities: list[float], k: int, reference: BenchScore, seeds: range) -> float:
    return statistics.fmean(
        judge_accuracy("B", reference, side(sampled(probabilities, k, random.Random(s)), k), STATISTICAL).se ** 2
        for s in seeds
    )


def test_inconclusive_says_how_many_samples_per_question_would_decide_it():
    """Questions of middling difficulty, 2 samples each: most of the noise is sampling. The
    number of samples the reason names, drawn from the same questions, does decide it."""
    rng = random.Random(7)
    probabilities = [0.55 + 0.1 * rng.random() for _ in range(60)]
    reference = BenchScore(score=0.72, n=5000)  # published, large: nearly no noise of its own
    b = judge_accuracy("B", reference, side(sampled(probabilities, 2, random.Random(1)), 2), STATISTICAL)
    assert b.verdict == "INCONCLUSIVE"
    found = re.search(r"or about (\d+) samples per question on these questions", b.reason)
    assert found, b.reason
    k = int(found.group(1))
    target = ((b.diff + 0.05) / 1.96) ** 2
    assert k > 2
    assert mean_se_squared(probabilities, k, reference, range(100, 130)) <= target * 1.1
    assert mean_se_squared(probabilities, max(k // 2, 2), reference, range(100, 130)) > target


def test_inconclusive_says_when_no_number_of_samples_can_decide_it():
    """Questions either easy or hard: the spread is between questions, and sampling each more
    often cannot narrow it; only more questions can."""
    rng = random.Random(3)
    probabilities = [0.95 if rng.random() < 0.6 else 0.05 for _ in range(40)]
    b = judge_accuracy(
        "B", BenchScore(score=0.62, n=5000), side(sampled(probabilities, 4, random.Random(2)), 4), STATISTICAL
    )
    assert b.verdict == "INCONCLUSIVE"
    assert "questions would decide it at this difference" in b.reason
    assert "more samples per question cannot: the spread between questions alone gives SE ≈" in b.reason


def windows(durations):
    """One window per pair at concurrency 1: a duration of 1.0 s is the reference's speed."""
    return [[result(1, d)] for d in durations]


def test_perf_undecided_names_the_levels_more_pairs_could_decide():
    reference = windows([1.0] * 5)
    steady = windows([1.02, 0.98, 1.01, 0.99, 1.0])  # ratio ~1.0, tight: PASS
    noisy = windows([0.8, 1.5, 0.9, 1.4, 1.0])  # ratio ~0.9, wide: straddles 0.8
    assert perf_undecided(reference, steady, STATISTICAL) == []
    assert perf_undecided(reference, noisy, STATISTICAL) == ["perf c=1 100/50"]
    assert perf_undecided(reference, noisy, CLASSIC) == []  # a point ratio is always decided
    assert perf_undecided([], [], STATISTICAL) == []


def test_adding_pairs_needs_both_stacks_up():
    from flagrelease.schema import PerfPlan

    assert PerfPlan(repeats=5, max_repeats=10, interleave=True).max_repeats == 10
    with pytest.raises(ValidationError, match="set interleave: true"):
        PerfPlan(repeats=5, max_repeats=10)
    with pytest.raises(ValidationError, match=r"max_repeats \(3\) is below repeats \(5\)"):
        PerfPlan(repeats=5, max_repeats=3, interleave=True)
