"""Relations at 10,000 per scope: add, search_relations, and search_memories beside them.

One store, two users, each with ``--relations`` relations among a few
thousand people, companies, cities and things, and ``--memories`` memories
that name them; a third user holds the same memories and no relation (the
control for what relations add to a memory search). Everything is measured
through ``lancemem serve`` over stdio with the SDK client, as the other speed
figures are, and in-process on the same store:

- add_relations of one new triple into the full scope;
- search_relations for questions that name an entity ("Where does X work?",
  "Where is X's employer based?") and for some that name none;
- search_memories in the scope with relations against the control scope;
- list_relations of one entity.

    python -m benchmarks.relations --relations 10000 --memories 1000 --calls 200
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from lancemem.core.config import load_settings
from lancemem.memory.facade import Memory

FIRST = ["Ada", "Bram", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Imani", "Joaquin",
         "Kaia", "Lars", "Mei", "Nnamdi", "Oksana", "Pavel", "Quinn", "Rania", "Sven", "Tomasz",
         "Uma", "Viktor", "Wanjiru", "Xiomara", "Yusuf", "Zofia", "Anouk", "Bjorn", "Catalina",
         "Dario", "Esme", "Fionn", "Gulnara", "Hamid", "Ingrid", "Jasper", "Keanu", "Leilani",
         "Matteo", "Noor"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Kowalski", "Oyelaran", "Brennan",
        "Castellanos", "Duchamp", "Eriksen", "Fujimoto", "Gallagher", "Horvath", "Iwasaki",
        "Jovanovic", "Kapoor", "Laurent", "Mbeki", "Nakamura", "Oduya", "Petrov", "Quintero",
        "Rossi", "Sato", "Thorsen", "Underwood", "Varga", "Whitfield", "Yamamoto"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark Industries",
             "Wayne Enterprises", "Cyberdyne", "Tyrell", "Soylent", "Wonka", "Gringotts",
             "Monarch Solutions", "Pied Piper", "Aperture Science", "Oscorp", "Dunder Mifflin",
             "Prestige Worldwide", "Blue Sun"]
CITIES = ["Berlin", "Lisbon", "Nairobi", "Osaka", "Montreal", "Valparaiso", "Tbilisi", "Hanoi",
          "Reykjavik", "Marrakesh", "Auckland", "Krakow", "Cusco", "Tallinn", "Accra"]
THINGS = ["jazz", "sourdough", "rock climbing", "chess", "origami", "kayaking", "sushi",
          "opera", "gardening", "pottery", "tango", "astronomy", "falafel", "cycling", "poetry"]


def world(count: int, rng: random.Random) -> list[dict[str, str]]:
    """``count`` distinct triples among people, companies, cities and things."""
    people = [f"{first} {last}" for first in FIRST for last in LAST]
    rng.shuffle(people)
    triples: dict[tuple[str, str, str], dict[str, str]] = {}
    kinds = [("works at", COMPANIES), ("lives in", CITIES), ("likes", THINGS),
             ("knows", people)]
    for company in COMPANIES:
        triples[(company, "headquartered in", "")] = {
            "source": company, "relationship": "headquartered in",
            "target": rng.choice(CITIES)}
    while len(triples) < count:
        person = rng.choice(people)
        relationship, targets = rng.choice(kinds)
        target = rng.choice(targets)
        if target != person:
            triples[(person, relationship, target)] = {
                "source": person, "relationship": relationship, "target": target}
    return list(triples.values())[:count]


def build(db: Path, relations: int, memories: int) -> dict[str, Any]:
    """Fill the store; returns what the queries need and how long the build took."""
    rng = random.Random(7)
    started = time.perf_counter()
    with Memory.from_settings(load_settings({"db": str(db)})) as memory:
        facts = {}
        for user in ("bench", "other"):
            facts[user] = world(relations, rng)
            for start in range(0, len(facts[user]), 100):
                memory.add_relations(facts[user][start:start + 100], user_id=user)
        people = sorted({f["source"] for f in facts["bench"] if f["relationship"] != (
            "headquartered in")})
        texts = [f"{rng.choice(people)} told me about {rng.choice(THINGS)} in "
                 f"{rng.choice(CITIES)}" for _ in range(memories)]
        for user in ("bench", "control"):
            memory.add_many([{"text": text, "user_id": user} for text in texts])
        stored = len(memory.list_relations(user_id="bench", limit=1000, show_invalid=True)[
            "results"])
        counts = {"relations_per_scope": memory.store.count("relations", "user_id = 'bench'"),
                  "entities_per_scope": memory.store.count("entities", "user_id = 'bench'")}
    assert stored > 0
    return {"people": people, "seconds": time.perf_counter() - started, **counts}


def queries(people: list[str], rng: random.Random) -> list[str]:
    named = [template.format(rng.choice(people)) for template in (
        "Where does {} work?", "Where is {}'s employer based?", "What does {} like?",
        "Who does {} know?", "Where does {} live?") for _ in range(8)]
    unnamed = ["who likes jazz?", "people who enjoy climbing", "a company in Berlin",
               "someone who cooks", "music lovers"] * 2
    return named + unnamed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(times: list[float]) -> str:
    return (f"p50 {percentile(times, 0.5) * 1000:.1f} ms, "
            f"p95 {percentile(times, 0.95) * 1000:.1f} ms")


def timed(action: Callable[[int], Any], calls: int) -> list[float]:
    for i in range(10):
        action(i)
    times = []
    for i in range(calls):
        started = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - started)
    return times


async def over_mcp(db: Path, asks: list[str], people: list[str],
                   calls: int) -> dict[str, list[float]]:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "lancemem", "serve", "--db", str(db)])
    out: dict[str, list[float]] = {}
    async with Client(params) as client:
        async def run(name: str, tool: str, make: Callable[[int], dict[str, Any]]) -> None:
            for i in range(10):
                await client.call_tool(tool, make(i))
            out[name] = []
            for i in range(calls):
                started = time.perf_counter()
                result = await client.call_tool(tool, make(i))
                out[name].append(time.perf_counter() - started)
                assert not result.is_error, result.content

        await run("search_relations", "search_relations",
                  lambda i: {"query": asks[i % len(asks)], "user_id": "bench"})
        for user in ("bench", "control"):
            await run(f"search_memories ({user})", "search_memories",
                      lambda i, u=user: {"query": asks[i % len(asks)], "user_id": u})
        await run("list_relations (one entity)", "list_relations",
                  lambda i: {"entity": people[i % len(people)], "user_id": "bench"})
        await run("add_relations (1 new)", "add_relations", lambda i: {
            "relations": [{"source": people[i % len(people)], "relationship": "visited",
                           "target": f"Museum {i}"}], "user_id": "bench"})
    return out


def in_process(db: Path, asks: list[str], calls: int) -> dict[str, list[float]]:
    with Memory.from_settings(load_settings({"db": str(db)})) as memory:
        found = memory.search_relations(asks[1], user_id="bench")["results"]
        print(f"  example: {asks[1]!r} -> " + "; ".join(
            f"{r['source']} {r['relationship']} {r['target']} ({r['score']:.2f})"
            for r in found[:4]))
        return {
            "search_relations": timed(lambda i: memory.search_relations(
                asks[i % len(asks)], user_id="bench"), calls),
            "search_memories (bench)": timed(lambda i: memory.search(
                asks[i % len(asks)], user_id="bench"), calls),
            "search_memories (control)": timed(lambda i: memory.search(
                asks[i % len(asks)], user_id="control"), calls),
        }


def main(relations: int, memories: int, calls: int) -> None:
    db = Path(tempfile.mkdtemp(prefix="lancemem-relations-bench-")) / "db"
    built = build(db, relations, memories)
    print(f"built {built['relations_per_scope']:,} relations and "
          f"{built['entities_per_scope']:,} entities per scope (2 scopes), {memories:,} "
          f"memories in each of 2 scopes, in {built['seconds']:.0f} s")
    asks = queries(built["people"], random.Random(11))
    print("in-process (Memory):")
    for name, times in in_process(db, asks, calls).items():
        print(f"  {name}: {summary(times)}")
    print("through lancemem serve over stdio (SDK client):")
    for name, times in anyio.run(over_mcp, db, asks, built["people"], calls).items():
        print(f"  {name}: {summary(times)}")
    print(f"{calls} calls each after 10 warm-up calls; median of the per-call times")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relations", type=int, default=10_000)
    parser.add_argument("--memories", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    main(options.relations, options.memories, options.calls)
