"""Release gates: does a candidate image keep the reference image's accuracy and speed?

Accuracy, per benchmark, under one of two rules (GatePolicy.rule):
- "classic", FlagRelease's published rule: PASS when the score drops by at most
  max_drop (5 points), whatever the benchmark's size.
- "statistical": the same margin, judged against the sampling error of the
  difference. With the interval diff ± z·SE, FAIL when all of it lies below
  -max_drop (a real drop beyond the margin), PASS when all of it lies at or above
  -max_drop, INCONCLUSIVE otherwise: the benchmark is too small to tell.
SE is paired (SE of the mean per-question difference) when both sides scored the
same question ids, which cancels question difficulty and is often several times
smaller; otherwise unpaired binomial, sqrt(p1(1-p1)/n1 + p2(1-p2)/n2). Both rules
report it.

Speed: at every level, output and total-token throughput of the candidate must
reach perf_min_ratio of the reference's. The bench measures both sides in pairs of
windows back to back (ABBA order), so drift on the host hits both alike. "classic"
compares the geometric mean of the pair ratios; "statistical" its confidence
interval (Student's t on the log ratios): PASS above the threshold, FAIL below,
INCONCLUSIVE across it, with the pairs that would decide it. Identical stacks are
the calibration: they must come out PASS, never FAIL.

Sides: where the stack has FlagGems, its operator record must show operators on the
flaggems side and none on the native side (`distinct_sides`), else INCONCLUSIVE.

The gate owns its inputs: `gate_inputs` pairs what the bench step measured with
what each check is compared against (the model's reference baseline where it
has the benchmark, else the native side of the same run).
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from scipy.stats import t as student_t

from flagrelease.baseline import Reference
from flagrelease.errors import ConfigError
from flagrelease.flaggems_record import sides_problem
from flagrelease.perf_metrics import PerfResult
from flagrelease.results import (
    AccuracyResult,
    BenchScore,
    BenchVerdict,
    GateReport,
    PerfRatio,
    PerfVerdict,
    ReferenceScore,
    SideResult,
)
from flagrelease.schema import GatePolicy

# Scores like 0.70 and 0.65 differ by 0.04999...: a drop of exactly max_drop must pass.
EPS = 1e-9


def judge_accuracy(benchmark: str, reference: BenchScore, candidate: BenchScore, policy: GatePolicy) -> BenchVerdict:
    diff = candidate.score - reference.score
    se_method, se = _standard_error(reference, candidate)
    low, high = diff - policy.z * se, diff + policy.z * se
    floor = -policy.max_drop - EPS
    scores = (
        f"{benchmark}{_avg_at(candidate)} {candidate.score:.3f} "
        f"vs reference{_avg_at(reference)} {reference.score:.3f} ({diff:+.3f})"
    )
    interval = f"the {_confidence(policy.z):.0%} interval [{low:+.3f}, {high:+.3f}]"
    error = f"{se_method} SE {se:.3f}"
    if policy.rule == "classic":
        verdict = "PASS" if diff >= floor else "FAIL"
        reason = f"{scores}: {'within' if verdict == 'PASS' else 'beyond'} the allowed drop of {policy.max_drop:.3f}"
    elif high < floor:
        verdict, reason = "FAIL", f"{scores}: {interval} ({error}) lies below -{policy.max_drop:.3f}, a real drop"
    elif low >= floor:
        verdict, reason = "PASS", f"{scores}: {interval} ({error}) lies above -{policy.max_drop:.3f}"
    else:
        verdict = "INCONCLUSIVE"
        reason = (
            f"{scores}: too noisy to decide: n={_sizes(reference, candidate)} gives SE ≈ {se:.3f} "
            f"({se_method}); {interval} straddles -{policy.max_drop:.3f}"
            f"{_needed(reference, candidate, se, diff, policy)}"
        )
    return BenchVerdict(
        benchmark=benchmark,
        verdict=verdict,
        rule=policy.rule,
        se_method=se_method,
        diff=diff,
        se=se,
        ci_low=low,
        ci_high=high,
        reason=reason,
    )


def judge_perf(level: PerfRatio, policy: GatePolicy) -> PerfVerdict:
    """Classic: the point ratio against the threshold. Statistical: the confidence interval of
    the paired ratio (log scale, Student's t over the pairs) against it: PASS when all of it
    lies at or above, FAIL when all of it lies below, INCONCLUSIVE when it straddles."""
    threshold = policy.perf_min_ratio
    where = f"concurrency {level.max_concurrency}, in {level.input_len} / out {level.output_len}"
    point = min(level.output_throughput, level.total_token_throughput)
    measured = (
        f"{where}: output throughput {level.output_throughput:.0%}, total {level.total_token_throughput:.0%} "
        f"of reference"
    )
    if policy.rule == "classic":
        verdict = "PASS" if point >= threshold - EPS else "FAIL"
        sign = "≥" if verdict == "PASS" else "<"
        return PerfVerdict(
            level=level, verdict=verdict, reason=f"{measured} ({sign} {threshold:.0%})", threshold=threshold
        )
    logs = [math.log(r) for r in level.pair_ratios]
    if len(logs) < 2:
        return PerfVerdict(
            level=level,
            threshold=threshold,
            verdict="INCONCLUSIVE",
            reason=f"{measured}: {len(logs)} pair of windows cannot tell a slowdown from the host's noise; "
            "measure at least 3 pairs (bench.perf.repeats)",
        )
    n, mean, spread = len(logs), statistics.fmean(logs), statistics.stdev(logs)
    half = t_quantile(policy.z, n - 1) * spread / math.sqrt(n)
    low, high = math.exp(mean - half), math.exp(mean + half)
    interval = f"{_confidence(policy.z):.0%} interval [{low:.3f}, {high:.3f}] over {n} pairs"
    if low >= threshold - EPS:
        verdict, reason = "PASS", f"{measured}; {interval} lies above {threshold:.2f}"
    elif high < threshold - EPS:
        verdict, reason = "FAIL", f"{measured}; {interval} lies below {threshold:.2f}: a real slowdown"
    else:
        verdict = "INCONCLUSIVE"
        reason = f"{measured}; {interval} straddles {threshold:.2f}{_pairs_needed(n, mean, spread, policy)}"
    return PerfVerdict(level=level, verdict=verdict, reason=reason, threshold=threshold, ci_low=low, ci_high=high)


def t_quantile(z: float, degrees: int) -> float:
    """Student's t quantile with the two-sided coverage of ±z under a normal (1.96 -> 95 %)."""
    return float(student_t.ppf((1 + _confidence(z)) / 2, degrees))


def _pairs_needed(n: int, mean: float, spread: float, policy: GatePolicy) -> str:
    """Pairs that would decide it at this spread and ratio (the interval shrinks as 1/sqrt(n))."""
    distance = abs(mean - math.log(policy.perf_min_ratio))
    if spread < EPS:
        return ""
    # The normal approximation first, then up to where Student's t agrees (it converges fast).
    needed = max(n + 1, math.ceil((policy.z * spread / max(distance, EPS)) ** 2))
    if needed > 1000:
        return "; the ratio sits within the noise of the threshold: more pairs would hardly decide it"
    while t_quantile(policy.z, needed - 1) * spread / math.sqrt(needed) >= distance:
        needed += 1
    return f"; about {needed} pairs would decide it at this spread"


def perf_ratios(reference: list[list[PerfResult]], candidate: list[list[PerfResult]]) -> list[PerfRatio]:
    """Candidate / reference throughput per (concurrency, input_len, output_len) level, paired
    window by window: `reference[i]` and `candidate[i]` are the i-th windows of every level,
    measured back to back."""

    def key(r: PerfResult) -> tuple[int, int, int]:
        return r.max_concurrency, r.input_len, r.output_len

    if not reference or len(reference) != len(candidate):
        raise ValueError(f"pairs differ: {len(reference)} reference windows, {len(candidate)} candidate")
    pairs: dict[tuple[int, int, int], list[tuple[float, float]]] = {}
    for ref_window, cand_window in zip(reference, candidate, strict=True):
        ref, cand = {key(r): r for r in ref_window}, {key(r): r for r in cand_window}
        if ref.keys() != cand.keys():
            raise ValueError(f"levels differ: reference {sorted(ref)}, candidate {sorted(cand)}")
        if any(r.output_throughput <= 0 or r.total_token_throughput <= 0 for r in ref_window):
            raise ValueError("a reference level has no throughput to compare against")
        for k in ref:
            pairs.setdefault(k, []).append(
                (
                    cand[k].output_throughput / ref[k].output_throughput,
                    cand[k].total_token_throughput / ref[k].total_token_throughput,
                )
            )
    return [
        PerfRatio(
            max_concurrency=k[0],
            input_len=k[1],
            output_len=k[2],
            output_throughput=_geometric_mean([out for out, _ in pairs[k]]),
            total_token_throughput=_geometric_mean([total for _, total in pairs[k]]),
            pair_ratios=[min(out, total) for out, total in pairs[k]],
        )
        for k in sorted(pairs)
    ]


def perf_undecided(
    reference: list[list[PerfResult]], candidate: list[list[PerfResult]], policy: GatePolicy
) -> list[str]:
    """The perf levels whose verdict, on the windows so far, is still INCONCLUSIVE: where more
    pairs could decide. The classic rule compares a point ratio and is never undecided."""
    if policy.rule == "classic" or not reference:
        return []
    verdicts = [judge_perf(level, policy) for level in perf_ratios(reference, candidate)]
    return [_level_name(v) for v in verdicts if v.verdict == "INCONCLUSIVE"]


def _level_name(p: PerfVerdict) -> str:
    return f"perf c={p.level.max_concurrency} {p.level.input_len}/{p.level.output_len}"


def _geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def decide(accuracy: dict[str, tuple[BenchScore, BenchScore]], perf: list[PerfRatio], policy: GatePolicy) -> GateReport:
    """`accuracy` maps a benchmark to its (reference, candidate) scores."""
    if not accuracy and not perf:
        raise ValueError("nothing to gate on: no benchmark and no perf level")
    benches = [judge_accuracy(name, ref, cand, policy) for name, (ref, cand) in accuracy.items()]
    levels = [judge_perf(level, policy) for level in perf]
    failed = [b.benchmark for b in benches if b.verdict == "FAIL"]
    failed += [_level_name(p) for p in levels if p.verdict == "FAIL"]
    unsure = [b.benchmark for b in benches if b.verdict == "INCONCLUSIVE"]
    unsure += [_level_name(p) for p in levels if p.verdict == "INCONCLUSIVE"]
    if failed:
        verdict, reason = "FAIL", f"failed: {', '.join(failed)}"
    elif unsure:
        blocks = "blocks" if policy.inconclusive_blocks else "does not block"
        verdict, reason = "INCONCLUSIVE", f"inconclusive ({blocks} release): {', '.join(unsure)}"
    else:
        verdict, reason = "PASS", "every gate passed"
    release = verdict == "PASS" or (verdict == "INCONCLUSIVE" and not policy.inconclusive_blocks)
    return GateReport(verdict=verdict, release=release, reason=reason, accuracy=benches, perf=levels)


def _standard_error(reference: BenchScore, candidate: BenchScore) -> tuple[Literal["paired", "unpaired"], float]:
    """A question's samples are one cluster: every SE here is over per-question means.

    Paired: the SE of the mean per-question difference. Unpaired: each side's spread of
    per-question means (p(1-p), the binomial, where only the score is known or with one
    sample per question), over its number of questions."""
    ref, cand = reference.per_question, candidate.per_question
    if ref is not None and cand is not None and ref.keys() == cand.keys() and len(ref) >= 2:
        diffs = [cand[q] - ref[q] for q in ref]
        return "paired", statistics.stdev(diffs) / math.sqrt(len(diffs))
    return "unpaired", math.sqrt(_spread(reference) / reference.n + _spread(candidate) / candidate.n)


def _spread(side: BenchScore) -> float:
    """Variance of a side's per-question means (population form: p(1-p) for 0/1 answers)."""
    if side.per_question is None:
        return side.score * (1 - side.score)
    return statistics.pvariance(side.per_question.values(), mu=side.score)


def _avg_at(side: BenchScore) -> str:
    return f" avg@{side.samples}" if side.samples > 1 else ""


def _confidence(z: float) -> float:
    """Two-sided coverage of diff ± z·SE under a normal approximation (1.96 -> 95%)."""
    return math.erf(z / math.sqrt(2))


def _sizes(reference: BenchScore, candidate: BenchScore) -> str:
    return str(reference.n) if reference.n == candidate.n else f"{reference.n} vs {candidate.n}"


def _needed(reference: BenchScore, candidate: BenchScore, se: float, diff: float, policy: GatePolicy) -> str:
    """What would decide it at this difference and the observed spread: more questions (SE
    shrinks as 1/sqrt(n)), or, where a side samples each question k times, more samples (they
    shrink only the part of SE that comes from sampling a question, not from the questions)."""
    distance = abs(diff + policy.max_drop)
    if distance < EPS:
        return ""
    target = (distance / policy.z) ** 2  # the variance of the difference that would decide it
    # As many questions on both sides: the SE shrinks as 1/sqrt(n) from this run's n.
    questions = f"; about {math.ceil(candidate.n * se**2 / target)} questions would decide it at this difference"
    sampling = sum(side.within_var / (side.samples * side.n) for side in (reference, candidate))
    if sampling <= 0:
        return questions
    between = max(se**2 - sampling, 0.0)
    per_sample = sum(side.within_var / side.n for side in (reference, candidate))
    if target <= between:
        alone = math.sqrt(between)
        return (
            questions
            + f" (more samples per question cannot: the spread between questions alone gives SE ≈ {alone:.3f})"
        )
    return (
        questions + f", or about {math.ceil(per_sample / (target - between))} samples per question on these questions"
    )


def gate_inputs(
    sides: dict[str, SideResult], reference: Reference | None
) -> tuple[dict[str, tuple[BenchScore, BenchScore]], list[PerfRatio], dict[str, ReferenceScore]]:
    """Accuracy pairs per benchmark and perf ratios of the flaggems side, with what each accuracy
    check is compared against and what that traces to. Accuracy: the reference (a published
    baseline or a released cell, steps/reference.py) where it has that benchmark, else the
    native side of this run (paired per question). Speed: the native side, level by level."""
    native, candidate = sides["native"], sides["flaggems"]
    pairs, against = {}, {}
    for name, result in candidate.accuracy.items():
        if reference is not None and name in reference.scores:
            pairs[name] = (reference.scores[name], _score(result))
            against[name] = reference.trace[name]
        elif name in native.accuracy:
            own = native.accuracy[name]
            pairs[name] = (_score(own), _score(result))
            against[name] = ReferenceScore(
                against="native side of this run", origin="this run", score=own.score, n=own.n, samples=own.samples
            )
        else:
            raise ConfigError(
                f"benchmark {name} was measured on the flaggems side only: nothing to compare it with",
                where=f"bench.native.accuracy.{name}",
                fix="measure both sides again (the sides of a run are measured together)",
            )
    try:
        ratios = perf_ratios(native.perf_repeats, candidate.perf_repeats) if candidate.perf_repeats else []
    except ValueError as err:
        raise ConfigError(
            f"the perf results cannot be compared: {err}",
            where="perf-native.json / perf-flaggems.json",
            fix="measure both sides again (the sides of a run are measured together)",
        ) from None
    return pairs, ratios, against


def judge(
    sides: dict[str, SideResult], reference: Reference | None, policy: GatePolicy
) -> tuple[GateReport, dict[str, ReferenceScore]]:
    """The gate's report on measured sides, and what each accuracy check compared against."""
    pairs, ratios, against = gate_inputs(sides, reference)
    return distinct_sides(decide(pairs, ratios, policy), sides, policy), against


def distinct_sides(report: GateReport, sides: dict[str, SideResult], policy: GatePolicy) -> GateReport:
    """A comparison proves something about FlagGems only when FlagGems served operators on the
    flaggems side and none on the native side (flaggems_record.py). When the records do not
    show that, a PASS becomes INCONCLUSIVE ("sides not distinct"); a FAIL or INCONCLUSIVE
    keeps its verdict and gains the reason."""
    problem = sides_problem(sides["native"].flaggems, sides["flaggems"].flaggems)
    if problem is None:
        looked = sides["flaggems"].flaggems is not None
        return report.model_copy(update={"sides_distinct": True if looked else None})
    reason = f"sides not distinct: {problem}"
    if report.verdict != "PASS":  # already not released on its own measurements
        return report.model_copy(update={"sides_distinct": False, "reason": f"{report.reason}; {reason}"})
    blocks = "blocks" if policy.inconclusive_blocks else "does not block"
    return report.model_copy(
        update={
            "verdict": "INCONCLUSIVE",
            "release": not policy.inconclusive_blocks,
            "reason": f"inconclusive ({blocks} release): {reason}",
            "sides_distinct": False,
        }
    )


def _score(result: AccuracyResult) -> BenchScore:
    return BenchScore(
        score=result.score,
        n=result.n,
        per_question=result.per_question(),
        samples=result.samples,
        within_var=result.within_variance(),
    )
