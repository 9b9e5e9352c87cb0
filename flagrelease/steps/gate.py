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

The gate owns its inputs: `gate_inputs` pairs what the bench step measured with
what each check is compared against (the model's reference baseline where it
has the benchmark, else the native side of the same run).
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from scipy.stats import t as student_t

from flagrelease.baseline import Baseline, bench_score
from flagrelease.errors import ConfigError
from flagrelease.perf_metrics import PerfResult
from flagrelease.results import (
    AccuracyResult,
    BenchScore,
    BenchVerdict,
    GateReport,
    PerfRatio,
    PerfVerdict,
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
    scores = f"{benchmark} {candidate.score:.3f} vs reference {reference.score:.3f} ({diff:+.3f})"
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
            f"{_needed(reference.n, se, diff, policy)}"
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


def _geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def decide(accuracy: dict[str, tuple[BenchScore, BenchScore]], perf: list[PerfRatio], policy: GatePolicy) -> GateReport:
    """`accuracy` maps a benchmark to its (reference, candidate) scores."""
    if not accuracy and not perf:
        raise ValueError("nothing to gate on: no benchmark and no perf level")
    benches = [judge_accuracy(name, ref, cand, policy) for name, (ref, cand) in accuracy.items()]
    levels = [judge_perf(level, policy) for level in perf]

    def name(p: PerfVerdict) -> str:
        return f"perf c={p.level.max_concurrency} {p.level.input_len}/{p.level.output_len}"

    failed = [b.benchmark for b in benches if b.verdict == "FAIL"] + [name(p) for p in levels if p.verdict == "FAIL"]
    unsure = [b.benchmark for b in benches if b.verdict == "INCONCLUSIVE"] + [
        name(p) for p in levels if p.verdict == "INCONCLUSIVE"
    ]
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
    ref, cand = reference.per_question, candidate.per_question
    if ref is not None and cand is not None and ref.keys() == cand.keys() and len(ref) >= 2:
        diffs = [cand[q] - ref[q] for q in ref]
        return "paired", statistics.stdev(diffs) / math.sqrt(len(diffs))
    p1, p2 = reference.score, candidate.score
    return "unpaired", math.sqrt(p1 * (1 - p1) / reference.n + p2 * (1 - p2) / candidate.n)


def _confidence(z: float) -> float:
    """Two-sided coverage of diff ± z·SE under a normal approximation (1.96 -> 95%)."""
    return math.erf(z / math.sqrt(2))


def _sizes(reference: BenchScore, candidate: BenchScore) -> str:
    return str(reference.n) if reference.n == candidate.n else f"{reference.n} vs {candidate.n}"


def _needed(n: int, se: float, diff: float, policy: GatePolicy) -> str:
    """Questions that would decide it at this difference, since SE shrinks as 1/sqrt(n)."""
    distance = abs(diff + policy.max_drop)
    if distance < EPS:
        return ""
    return f"; about {math.ceil(n * (policy.z * se / distance) ** 2)} questions would decide it at this difference"


def gate_inputs(
    sides: dict[str, SideResult], baseline: Baseline | None
) -> tuple[dict[str, tuple[BenchScore, BenchScore]], list[PerfRatio], dict[str, str]]:
    """Accuracy pairs per benchmark and perf ratios of the flaggems side, with what each is
    compared against. Accuracy: the baseline where it has that benchmark, else the native
    side of this run (paired per question). Speed: the native side, level by level."""
    native, candidate = sides["native"], sides["flaggems"]
    pairs, against = {}, {}
    for name, result in candidate.accuracy.items():
        if baseline is not None and name in baseline.benchmarks:
            pairs[name] = (bench_score(baseline, name), _score(result))
            against[name] = f"baseline {baseline.stack}"
        elif name in native.accuracy:
            pairs[name] = (_score(native.accuracy[name]), _score(result))
            against[name] = "native side of this run"
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
    sides: dict[str, SideResult], baseline: Baseline | None, policy: GatePolicy
) -> tuple[GateReport, dict[str, str]]:
    """The gate's report on measured sides, and what each accuracy check compared against."""
    pairs, ratios, against = gate_inputs(sides, baseline)
    return decide(pairs, ratios, policy), against


def _score(result: AccuracyResult) -> BenchScore:
    return BenchScore(score=result.score, n=result.n, per_question=result.per_question())
