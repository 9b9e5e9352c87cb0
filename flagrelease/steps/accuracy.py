"""Accuracy step: run a JSONL benchmark against the served model, question by question.

Datasets are JSONL, one question per line:
  multiple_choice: {"id": ..., "question": ..., "choices": ["..", ..], "answer": "B"}
  exact_match:     {"id": ..., "question": ..., "answer": "42"}
Multiple-choice answers are constrained to the choice letters with the engine's
own mechanism (llama.cpp grammar, vLLM guided_choice, SGLang regex), so even a
random-weight model gives a real, checkable answer. Every question's record is
kept; a question that still fails after its retries fails the evaluation rather
than silently counting as wrong. With `samples: k` each question is asked k times at
the plan's temperature and scored avg@k.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import statistics
import string
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from flagrelease.adapters.serve_client import loopback_url
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.results import AccuracyResult, Kind, QuestionResult, per_question_means


class Question(BaseModel):
    id: str
    question: str
    choices: list[str] | None = None
    answer: str


class Dataset(BaseModel):
    name: str
    kind: Kind
    questions: list[Question]


def load_dataset(path: Path, name: str, kind: Kind) -> Dataset:
    if not path.is_file():
        raise ConfigError(
            f"dataset {name} not found at {path}",
            where=f"bench.accuracy[{name}].path",
            fix="create the JSONL file or point the benchmark at it",
        )
    questions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            q = Question.model_validate_json(line)
        except ValidationError as err:
            raise ConfigError(
                f"dataset line is not a question: {err.errors()[0]['msg']}", where=f"{path}:{number}"
            ) from None
        if kind == "multiple_choice" and (not q.choices or q.answer not in _letters(len(q.choices))):
            raise ConfigError(
                f"question {q.id} needs choices and an answer letter among them", where=f"{path}:{number}"
            )
        questions.append(q)
    if not questions:
        raise ConfigError(f"dataset {name} has no questions", where=str(path))
    return Dataset(name=name, kind=kind, questions=questions)


def _letters(n: int) -> list[str]:
    return list(string.ascii_uppercase[:n])


def prompt(q: Question) -> str:
    if q.choices is None:
        return f"{q.question}\nAnswer with the final answer only."
    options = "\n".join(
        f"{letter}. {choice}" for letter, choice in zip(_letters(len(q.choices)), q.choices, strict=True)
    )
    return f"{q.question}\n{options}\nAnswer with the letter of the correct choice only."


def constraint(engine: str, q: Question) -> dict[str, Any]:
    """Request fields that restrict a multiple-choice answer to its letters, per engine."""
    if q.choices is None:
        return {}
    letters = _letters(len(q.choices))
    if engine == "llama_cpp":
        return {"grammar": "root ::= " + " | ".join(f'"{x}"' for x in letters)}
    if engine == "vllm":
        return {"guided_choice": letters}
    return {"regex": "(" + "|".join(letters) + ")"}


def sampling(engine: str, temperature: float, top_p: float, question: str, sample: int) -> dict[str, Any]:
    """Request fields of a sampled answer. llama-server truncates the distribution by default
    (top_k 40, min_p 0.05), vLLM does not: switched off, so that both sample from what the
    plan states (temperature, top_p). Each (question, sample) has its own seed: a rerun asks
    the same, and no two questions share a random draw (one seed per sample index would give
    every question the same uniform number, so questions of similar odds answer alike)."""
    if temperature == 0:
        return {}
    seed = int.from_bytes(hashlib.sha256(f"{question}\0{sample}".encode()).digest()[:4], "big")
    fields: dict[str, Any] = {"top_p": top_p, "seed": seed}
    if engine == "llama_cpp":
        fields |= {"top_k": 0, "min_p": 0.0}
    return fields


def grade(q: Question, reply: str) -> tuple[str, bool]:
    text = reply.strip()
    if q.choices is not None:
        answer = next((c for c in text if c in _letters(len(q.choices))), "")
    else:
        answer = text.splitlines()[-1].strip() if text else ""
    return answer, answer.strip().lower() == q.answer.strip().lower()


async def evaluate(
    base_url: str,
    model: str,
    dataset: Dataset,
    *,
    engine: str,
    concurrency: int = 4,
    retries: int = 2,
    max_tokens: int = 8,
    timeout_s: float = 120.0,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> AccuracyResult:
    """Ask every question `samples` times (avg@k; `sampling` says how). The score is the mean
    over questions of each question's share of correct samples; its SE treats a question's
    samples as one cluster."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=loopback_url(base_url), timeout=timeout_s, trust_env=False) as client:

        async def one(q: Question, sample: int) -> QuestionResult:
            async with gate:
                return await _ask(
                    client, model, q, engine, retries, max_tokens, temperature=temperature, top_p=top_p, sample=sample
                )

        results = await asyncio.gather(*(one(q, i) for q in dataset.questions for i in range(samples)))
    means = per_question_means(list(results))
    n = len(means)
    p = sum(means.values()) / n
    return AccuracyResult(
        benchmark=dataset.name,
        kind=dataset.kind,
        n=n,
        correct=sum(r.correct for r in results),
        score=p,
        se=math.sqrt(statistics.pvariance(means.values(), mu=p) / n),
        samples=samples,
        settings={
            "model": model,
            "engine": engine,
            "concurrency": concurrency,
            "retries": retries,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "samples": samples,
        },
        results=list(results),
    )


async def _ask(
    client: httpx.AsyncClient,
    model: str,
    q: Question,
    engine: str,
    retries: int,
    max_tokens: int,
    *,
    temperature: float,
    top_p: float,
    sample: int,
) -> QuestionResult:
    body = (
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt(q)}],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        | constraint(engine, q)
        | sampling(engine, temperature, top_p, q.id, sample)
    )
    last_error = ""
    for attempt in range(1, retries + 2):
        try:
            response = await client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            reply = response.json()["choices"][0]["message"].get("content") or ""
            answer, correct = grade(q, reply)
            return QuestionResult(
                id=q.id, expected=q.answer, answer=answer, correct=correct, attempts=attempt, sample=sample
            )
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
            last_error = f"{type(err).__name__}: {err}"
            await asyncio.sleep(0.2 * attempt)
    raise ServiceError(
        f"question {q.id} failed after {retries + 1} attempts: {last_error}",
        where=f"{client.base_url}/v1/chat/completions",
    )


def run(base_url: str, model: str, dataset: Dataset, **kwargs: Any) -> AccuracyResult:
    return asyncio.run(evaluate(base_url, model, dataset, **kwargs))


def write_records(result: AccuracyResult, path: Path) -> None:
    """Per-question records as JSONL: what every reported score is computed from."""
    path.write_text("".join(json.dumps(r.model_dump()) + "\n" for r in result.results))
