"""A login flood from its own process (as an attacker's machine would be): ``concurrency``
clients send wrong-password logins, half subscriber and half officer, to known and unknown
names, as fast as the gateway answers, for ``seconds``; never backing off. Prints one JSON
object: answers by status, and every answer that broke the contract (a 5xx other than 503
with Retry-After, a transport error).

    python -m tests.integration.login_flood URL SECONDS CONCURRENCY ACCOUNT OFFICER
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter

import aiohttp
import orjson


async def flood(
    base: str, seconds: float, concurrency: int, account: str, officer: str
) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    broken: list[str] = []
    names = [account] + [f"zz{n:08d}x" for n in range(10)]
    logins = [officer] + [f"ra-nobody-{n}" for n in range(10)]
    stop = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(i: int, http: aiohttp.ClientSession) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            if i % 2:
                path, body = (
                    "/api/v1/session",
                    {"account": names[(i + n) % len(names)], "password": f"wrong-{n}"},
                )
            else:
                path, body = (
                    "/api/v1/ra/session",
                    {"login": logins[(i + n) % len(logins)], "password": f"wrong-{n}"},
                )
            try:
                async with http.post(
                    base + path,
                    data=orjson.dumps(body),
                    headers={"Content-Type": "application/json"},
                ) as r:
                    payload = await r.read()
                    statuses[str(r.status)] += 1
                    code = orjson.loads(payload).get("error", "") if payload else ""
                    codes[code] += 1
                    if r.status >= 500 and (
                        r.status != 503 or code != "busy" or not r.headers.get("Retry-After")
                    ):
                        broken.append(f"{r.status} {code} {r.headers.get('Retry-After')}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                broken.append(f"transport: {type(exc).__name__}: {exc}")

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:
        await asyncio.gather(*(client(i, http) for i in range(concurrency)))
    return {
        "statuses": dict(statuses),
        "codes": dict(codes),
        "broken": broken[:50],
        "broken_count": len(broken),
    }


def main(argv: list[str]) -> int:
    base, seconds, concurrency, account, officer = argv
    # an attacker's CPU is not the server's: on a shared test machine the generator yields
    # to the gateway (it still keeps every one of its connections busy, which is the load)
    os.nice(10)
    result = asyncio.run(flood(base, float(seconds), int(concurrency), account, officer))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
