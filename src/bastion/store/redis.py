"""Redis (or Valkey), single server or Redis Cluster, through redis-py's asyncio client.

Records are orjson bytes under native TTLs (SET ... PX): an expired record is simply gone, for reads, consumes
and listings alike, and Redis clears it out itself. Redis keeps the time; no clock of ours is involved.

Where a record lives (`locate`): `rec:{<tag>}<key>`. The hash tag is the grant id for the records a grant owns
(grant, code, usedcode, access, refresh, rotated) and the whole key for the others, so on a Cluster every record
of one grant, and that grant's index, hash to one slot. The index `idx:{<grant id>}` is a set of the grant's
keys, kept in the same scripts that write and delete them: it makes revoking a grant (deleting the prefixes of
keys.issued_under) exact and atomic, where Redis has no prefix delete of its own. A tag holding a brace is
replaced by a digest of it, so that nothing a key contains can move the tag.

A commit is one Lua script (COMMIT below, run by EVALSHA, loaded again after a restart lost it): it checks that
every key to consume exists, then deletes, deletes by prefix and writes, all or nothing, since Redis runs a
script alone. On a single server every commit is one script. On a Cluster a script may only touch one slot,
so a commit whose keys span slots (consuming a transaction while writing a grant, for one) runs in steps,
see `_commit_spread`: first what it consumes and creates, slot by slot in slot order, putting back what it took
and deleting what it created if a later slot refuses; then the rest, slot by slot. A failure between the steps
leaves the consumed records consumed and nothing written: the one-time thing is spent and nothing was issued
(fail closed; never twice). While a spread commit is under way, another may briefly see its first slots' creates.

A prefix that names one grant's records (`<kind>:<grant id>:`, kind one of the grant's) is deleted through the
grant's index. Any other prefix (no Bastion code deletes by one; the admin and tests may) is found by SCAN:
inside the script on a single server (atomic, and as slow as the keyspace is large), beforehand on every master
of a Cluster (a record written between the scan and the commit survives).

Every error of the driver (refused, timed out, cluster down, a script error) becomes StoreUnavailable, naming
the kind of failure, never a key or a value; so do its own slips while the server goes away (an AttributeError
on a connection it dropped meanwhile, uvloop's RuntimeError on a closed transport), the unexpected ones logged
with their traceback. Nothing is retried by the driver: a commit whose answer was lost
may have been applied, and running it again would report its own consume as somebody else's. Connections are
made again on the next call after a failure, so the store recovers by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from . import keys
from .base import Commit, Record, Store
from .errors import StoreUnavailable

log = logging.getLogger("bastion.store")

TIMEOUT_SECONDS = 3.0  # for one connection attempt and one reply: a client sees the 503 before its own timeout
CONNECTIONS = 32
SCAN_COUNT = 1000
# Records grouped by their owner (a grant, or a shared MCP session): one hash slot and one index per owner.
GRANT_KINDS = frozenset(keys.OWNED_KINDS)
RECORD = "rec:"
INDEX = "idx:"

# KEYS and ARGV are described by ARGV[1], a JSON plan of small integers (positions in KEYS and ARGV), so that no
# key or value is ever parsed as JSON by the script:
#   c consume  [key, member, index]        every one must exist, or nothing happens and {0} is returned
#   a absent   [key]                       every one must not exist (create: its record is a `p` entry too)
#   d delete   [key, member, index]
#   g grant prefix delete  [index, prefix, home]   home: where the index's members live ("rec:{tag}")
#   s scanned prefix delete [pattern, prefix]      single server only
#   p put      [key, member, index, ttl ms (0: none), value, home]
#   t 1: return the consumed records' values and remaining TTLs, to put them back if a later slot refuses
#   x 1: put only where absent (putting back)
#   u undo a create [key, member, index, value]   deleted if it still holds `value`
# `index` is 0 for a key no grant owns. The index set outlives its members (its TTL is the longest of theirs);
# members whose records expired are pruned each time the set doubles in size.
COMMIT = """
local plan = cjson.decode(ARGV[1])
local function unindex(e)
  if e[3] > 0 then redis.call('SREM', KEYS[e[3]], ARGV[e[2]]) end
end
local function index(idx, member, ttl, home)
  local before = redis.call('PTTL', idx)
  if redis.call('SADD', idx, member) == 1 then
    local n = redis.call('SCARD', idx)
    if n >= 64 and bit.band(n, n - 1) == 0 then
      for _, m in ipairs(redis.call('SMEMBERS', idx)) do
        if redis.call('EXISTS', home .. m) == 0 then redis.call('SREM', idx, m) end
      end
    end
  end
  if ttl == 0 then
    redis.call('PERSIST', idx)
  elseif before ~= -1 and before < ttl then
    redis.call('PEXPIRE', idx, string.format('%d', ttl))
  end
end
for _, e in ipairs(plan.c) do
  if redis.call('EXISTS', KEYS[e[1]]) == 0 then return {0} end
end
for _, e in ipairs(plan.a) do
  if redis.call('EXISTS', KEYS[e[1]]) == 1 then return {0} end
end
local result = {1}
for _, e in ipairs(plan.c) do
  if plan.t == 1 then
    result[#result + 1] = redis.call('GET', KEYS[e[1]])
    result[#result + 1] = redis.call('PTTL', KEYS[e[1]])
  end
  redis.call('DEL', KEYS[e[1]])
  unindex(e)
end
for _, e in ipairs(plan.d) do
  redis.call('DEL', KEYS[e[1]])
  unindex(e)
end
for _, e in ipairs(plan.u) do
  if redis.call('GET', KEYS[e[1]]) == ARGV[e[4]] then
    redis.call('DEL', KEYS[e[1]])
    unindex(e)
  end
end
for _, e in ipairs(plan.g) do
  local idx, prefix, home = KEYS[e[1]], ARGV[e[2]], ARGV[e[3]]
  for _, m in ipairs(redis.call('SMEMBERS', idx)) do
    if string.sub(m, 1, #prefix) == prefix then
      redis.call('DEL', home .. m)
      redis.call('SREM', idx, m)
    end
  end
end
for _, e in ipairs(plan.s) do
  local pattern, prefix = ARGV[e[1]], ARGV[e[2]]
  local cursor = '0'
  repeat
    local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = page[1]
    for _, k in ipairs(page[2]) do
      local logical = string.sub(k, string.find(k, '}', 1, true) + 1)
      if string.sub(logical, 1, #prefix) == prefix then redis.call('DEL', k) end
    end
  until cursor == '0'
end
for _, e in ipairs(plan.p) do
  local command = {'SET', KEYS[e[1]], ARGV[e[5]]}
  if e[4] > 0 then
    command[#command + 1] = 'PX'
    command[#command + 1] = string.format('%d', e[4])
  end
  if plan.x == 1 then command[#command + 1] = 'NX' end
  if redis.call(unpack(command)) and e[3] > 0 then index(KEYS[e[3]], ARGV[e[2]], e[4], ARGV[e[6]]) end
end
return result
"""


def _tag(part: str) -> str:
    # A brace would end the tag early (or make it empty, hashing the whole name): a digest has none.
    if part and "{" not in part and "}" not in part:
        return part
    return "#" + hashlib.sha256(part.encode()).hexdigest()[:32]


def _grant_of(key: str) -> str | None:
    """The grant owning `key` (`grant:<id>`, `<kind>:<id>:<hash>`), if it is one of a grant's records."""
    kind, sep, rest = key.partition(keys.SEPARATOR)
    if not sep or kind not in GRANT_KINDS:
        return None
    return rest.partition(keys.SEPARATOR)[0] or None


def grant_scope(prefix: str) -> str | None:
    """The grant every key starting with `prefix` belongs to, if the prefix names one whole grant id."""
    kind, sep, rest = prefix.partition(keys.SEPARATOR)
    if not sep or kind not in GRANT_KINDS:
        return None
    grant, closed, _ = rest.partition(keys.SEPARATOR)
    return grant if grant and closed else None


@dataclass(frozen=True)
class Location:
    name: str  # the Redis key holding the record
    index: str | None  # the index set of the grant owning it
    home: str  # what the record's name starts with before the store key: "rec:{tag}"


def locate(key: str) -> Location:
    """Where the record of store key `key` lives in Redis (the one place that maps store keys to Redis keys)."""
    grant = _grant_of(key)
    tag = _tag(grant if grant is not None else key)
    home = f"{RECORD}{{{tag}}}"
    return Location(home + key, f"{INDEX}{{{tag}}}" if grant is not None else None, home)


def grant_index(grant: str) -> Location:
    """The index of one grant, and where its members live."""
    tag = _tag(grant)
    return Location(f"{INDEX}{{{tag}}}", None, f"{RECORD}{{{tag}}}")


def store_key(name: str) -> str:
    """The store key a Redis record name holds (the inverse of `locate`)."""
    return name[name.index("}") + 1 :]


def scan_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern covering every record whose store key starts with `prefix` (and perhaps more: the
    caller compares exactly)."""
    escaped = "".join("\\" + c if c in "*?[]\\^" else c for c in prefix)
    return f"{RECORD}{{*}}{escaped}*"


def _ttl_ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


@dataclass
class _Script:
    """The KEYS, ARGV and plan of one COMMIT call."""

    keys: list[str] = field(default_factory=list)
    args: list[str | bytes] = field(default_factory=lambda: [""])
    plan: dict[str, Any] = field(
        default_factory=lambda: {"c": [], "a": [], "d": [], "u": [], "g": [], "s": [], "p": [], "t": 0, "x": 0}
    )
    _key_at: dict[str, int] = field(default_factory=dict)

    def key(self, name: str | None) -> int:
        if name is None:
            return 0
        if name not in self._key_at:
            self.keys.append(name)
            self._key_at[name] = len(self.keys)
        return self._key_at[name]

    def arg(self, value: str | bytes) -> int:
        self.args.append(value)
        return len(self.args)

    def entry(self, section: str, key: str) -> list[int]:
        where = locate(key)
        entry = [self.key(where.name), self.arg(key), self.key(where.index)]
        self.plan[section].append(entry)
        return entry

    def create(self, key: str, value: bytes, ttl: float | None) -> None:
        self.plan["a"].append([self.key(locate(key).name)])
        if ttl is None or ttl > 0:  # born expired: checked, and nothing written
            self.put(key, value, _ttl_ms(ttl) if ttl is not None else 0)

    def undo_create(self, key: str, value: bytes) -> None:
        entry = self.entry("u", key)
        entry.append(self.arg(value))

    def grant_prefix(self, grant: str, prefix: str) -> None:
        where = grant_index(grant)
        self.plan["g"].append([self.key(where.name), self.arg(prefix), self.arg(where.home)])

    def scanned_prefix(self, prefix: str) -> None:
        self.plan["s"].append([self.arg(scan_pattern(prefix)), self.arg(prefix)])

    def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        entry = self.entry("p", key)
        entry += [ttl_ms, self.arg(value), self.arg(locate(key).home)]

    def call_args(self) -> tuple[list[str], list[str | bytes]]:
        return self.keys, [orjson.dumps(self.plan), *self.args[1:]]


CLOSED_TRANSPORT = "the handler is closed"  # uvloop's RuntimeError on a transport that is gone


def _unexpected(exc: BaseException) -> StoreUnavailable:
    log.warning("redis: the driver failed with %s; answered as the store unavailable", type(exc).__name__, exc_info=exc)
    return StoreUnavailable(f"redis: {type(exc).__name__}")


def _unavailable(exc: BaseException) -> StoreUnavailable:
    # The driver's messages may quote a command; the class of the failure is what an operator needs.
    if isinstance(exc, RedisError | RedisClusterException):
        return StoreUnavailable(f"redis: {type(exc).__name__}")
    if isinstance(exc, TimeoutError):
        return StoreUnavailable("redis: timed out")
    return StoreUnavailable(f"redis: {type(exc).__name__}")


Client = Redis | RedisCluster


class RedisStore(Store):
    def __init__(
        self, url: str, *, cluster: bool | None = None, timeout: float = TIMEOUT_SECONDS, connections: int = CONNECTIONS
    ) -> None:
        """`url`: redis://, rediss:// (TLS) or unix://; `cluster`: a Redis Cluster (None: ask the server);
        `connections`: at most this many at once (per master on a Cluster); more requests wait for one."""
        self.url = url
        self.connections = connections
        self._slots: asyncio.Semaphore | None = None
        self.cluster = cluster
        self.timeout = timeout
        self._client: Client | None = None
        self._closed = False
        self._starting: asyncio.Lock | None = None
        self._commit: AsyncScript | None = None

    @contextlib.asynccontextmanager
    async def _talking(self) -> AsyncIterator[None]:
        """One exchange with Redis: a connection of the pool's (waiting at most the timeout for one), and the
        driver's errors as StoreUnavailable."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise StoreUnavailable("redis: every connection stayed busy for the whole timeout") from None
        try:
            yield
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from exc
        except StoreUnavailable:
            raise
        except RuntimeError as exc:
            if CLOSED_TRANSPORT not in str(exc):
                raise _unexpected(exc) from exc
            # uvloop's answer to writing on a connection the server closed (the store going down): the driver
            # lets it through as it is, where asyncio's own loop would have raised ConnectionError.
            raise StoreUnavailable("redis: ConnectionError (the connection was closed)") from exc
        except Exception as exc:
            # The driver's own slips while the server goes away (a connection it dropped meanwhile, seen as
            # AttributeError on its writer): the store did not answer, so neither does the request (503, never a
            # 500); logged with its traceback, in case it was not the server's doing.
            raise _unexpected(exc) from exc
        finally:
            self._slots.release()

    def _options(self) -> dict[str, Any]:
        # No retries by the driver (see the module's docstring); bounded waits for a dead or stalled server.
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),
            "max_connections": self.connections,
        }

    async def start(self) -> None:
        if self._closed:
            raise StoreUnavailable("redis: the store is closed")
        if self._client is not None:
            return
        client: Client | None = None
        try:
            async with self._talking():
                cluster = self.cluster
                if cluster is None:
                    probe = Redis.from_url(self.url, **self._options())
                    try:
                        info = await probe.info("cluster")
                    finally:
                        await probe.aclose()
                    cluster = bool(info.get("cluster_enabled"))
                if cluster:
                    client = RedisCluster.from_url(self.url, **self._options())
                    await client.initialize()
                else:
                    client = Redis.from_url(self.url, **self._options())
                await client.ping()
                await client.script_load(COMMIT)
        except BaseException:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
            raise
        self.cluster = cluster
        self._commit = client.register_script(COMMIT)
        self._client = client

    async def _ready(self) -> Client:
        """The client, connecting first if start() was not called (a command-line tool, a test)."""
        if self._client is None:
            if self._closed:
                raise StoreUnavailable("redis: the store is closed")
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                await self.start()
        assert self._client is not None
        return self._client

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- reads -------------------------------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        client = await self._ready()
        async with self._talking():
            value = await client.get(locate(key).name)
        return _decode(value) if value is not None else None

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        names = [locate(key).name for key in keys]
        client = await self._ready()
        if not names or (isinstance(client, RedisCluster) and len({key_slot(n.encode()) for n in names}) > 1):
            return await super().get_many(keys)  # MGET cannot span slots
        async with self._talking():
            values = await client.mget(names)
        return [_decode(value) if value is not None else None for value in values]

    async def keys(self, prefix: str) -> list[str]:
        found = {key for key in await self._scan(prefix) if key.startswith(prefix)}
        return sorted(found)

    async def _scan(self, prefix: str) -> set[str]:
        """Store keys of live records whose names match the prefix's pattern, from every master."""
        client = await self._ready()
        pattern = scan_pattern(prefix)
        found: set[str] = set()
        async with self._talking():
            if isinstance(client, RedisCluster):
                for node in client.get_primaries():
                    cursor = 0
                    while True:
                        page = await client.execute_command(
                            "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, target_nodes=node
                        )
                        cursor, names = _page(page)
                        found.update(store_key(name.decode()) for name in names)
                        if cursor == 0:
                            break
            else:
                async for name in client.scan_iter(match=pattern, count=SCAN_COUNT):
                    found.add(store_key(name.decode()))
        return found

    # --- commits -----------------------------------------------------------------------------------------------
    async def commit(self, change: Commit) -> bool:
        change.check()
        client = await self._ready()
        if isinstance(client, RedisCluster):
            return await self._commit_cluster(client, change)
        script = _Script()
        self._fill(script, change, scanned=change.delete_prefix)
        return await self._run(client, script) is not None

    def _fill(self, script: _Script, change: Commit, scanned: Iterable[str]) -> None:
        """Everything of `change` into one script (the caller knows it fits one slot, or one server)."""
        for key in change.consume:
            script.entry("c", key)
        for key, (record, ttl) in change.create.items():
            script.create(key, orjson.dumps(record), ttl)
        for key in change.delete:
            script.entry("d", key)
        for prefix in change.delete_prefix:
            grant = grant_scope(prefix)
            if grant is not None:
                script.grant_prefix(grant, prefix)
        for prefix in scanned:
            if grant_scope(prefix) is None:
                script.scanned_prefix(prefix)
        for key, (record, ttl) in change.put.items():
            if ttl is not None and ttl <= 0:
                script.entry("d", key)  # born expired: whatever was there is replaced by nothing
            else:
                script.put(key, orjson.dumps(record), _ttl_ms(ttl) if ttl is not None else 0)

    async def _run(self, client: Client, script: _Script) -> list[Any] | None:
        """Run COMMIT; its result list, or None if a key to consume was missing."""
        script_keys, args = script.call_args()
        if not script_keys and not script.plan["s"]:
            return [1]  # nothing to do (a Cluster would not know where to send it)
        async with self._talking():
            assert self._commit is not None
            result = await self._commit(keys=script_keys, args=args, client=client)
        result = cast(list[Any], result)
        return result if result[0] == 1 else None

    async def _commit_cluster(self, client: RedisCluster, change: Commit) -> bool:
        # Prefixes other than a grant's are resolved by scanning every master first.
        scanned = [p for p in change.delete_prefix if grant_scope(p) is None]
        if scanned:
            change = Commit(
                consume=change.consume,
                delete=[*change.delete, *sorted({k for p in scanned for k in await self._scan(p) if k.startswith(p)})],
                delete_prefix=[p for p in change.delete_prefix if grant_scope(p) is not None],
                put=change.put,
                create=change.create,
            )
        keys_named = (*change.consume, *change.create, *change.delete, *change.put)
        slots = {key_slot(locate(k).name.encode()) for k in keys_named}
        slots |= {key_slot(grant_index(g).name.encode()) for p in change.delete_prefix if (g := grant_scope(p))}
        if len(slots) <= 1:
            script = _Script()
            self._fill(script, change, scanned=())
            return await self._run(client, script) is not None
        return await self._commit_spread(client, change)

    async def _commit_spread(self, client: RedisCluster, change: Commit) -> bool:
        """A commit over several slots: consume and create slot by slot (undoing the slots before on refusal),
        then the rest."""
        taken: list[tuple[list[str], list[Any]]] = []
        made: list[tuple[str, bytes]] = []
        for group in _by_slot([*change.consume, *change.create]):
            consumed = [key for key in group if key not in change.create]
            script = _Script()
            for key in consumed:
                script.entry("c", key)
            values = {key: orjson.dumps(change.create[key][0]) for key in group if key in change.create}
            for key, value in values.items():
                script.create(key, value, change.create[key][1])
            script.plan["t"] = 1
            try:
                result = await self._run(client, script)
            except StoreUnavailable:
                await self._undo(client, taken, made)
                raise
            if result is None:
                await self._undo(client, taken, made)
                return False
            taken.append((consumed, result[1:]))
            made.extend(values.items())
        rest = Commit(delete=change.delete, delete_prefix=change.delete_prefix, put=change.put)
        parts: defaultdict[int, Commit] = defaultdict(Commit)
        for key in rest.delete:
            parts[_slot(key)].delete.append(key)
        for prefix in rest.delete_prefix:
            grant = grant_scope(prefix)
            assert grant is not None  # the others were resolved into keys above
            parts[key_slot(grant_index(grant).name.encode())].delete_prefix.append(prefix)
        for key, item in rest.put.items():
            parts[_slot(key)].put[key] = item
        for slot in sorted(parts):
            script = _Script()
            self._fill(script, parts[slot], scanned=())
            await self._run(client, script)
        return True

    async def _undo(
        self, client: RedisCluster, taken: list[tuple[list[str], list[Any]]], made: list[tuple[str, bytes]]
    ) -> None:
        """Put back what earlier slots consumed and delete what they created (where it still holds our record)."""
        await self._put_back(client, taken)
        for group in _by_slot([key for key, _ in made]):
            script = _Script()
            for key in group:
                script.undo_create(key, dict(made)[key])
            with contextlib.suppress(StoreUnavailable):
                await self._run(client, script)

    async def _put_back(self, client: RedisCluster, taken: list[tuple[list[str], list[Any]]]) -> None:
        """Restore what earlier slots consumed for a commit that then failed, unless a newer record took the key
        meanwhile. Best effort: if this fails too, those records stay consumed (fail closed)."""
        for group, values in taken:
            script = _Script()
            script.plan["x"] = 1
            for i, key in enumerate(group):
                value, remaining = values[2 * i], int(values[2 * i + 1])
                if value is None or remaining == 0 or remaining < -1:
                    continue  # it expired meanwhile
                script.put(key, value, remaining if remaining > 0 else 0)
            with contextlib.suppress(StoreUnavailable):
                await self._run(client, script)


def _slot(key: str) -> int:
    return key_slot(locate(key).name.encode())


def _by_slot(store_keys: list[str]) -> list[list[str]]:
    """Keys grouped by hash slot, in slot order (two commits over the same slots take them in the same order)."""
    groups: defaultdict[int, list[str]] = defaultdict(list)
    for key in store_keys:
        groups[_slot(key)].append(key)
    return [groups[slot] for slot in sorted(groups)]


def _page(reply: Any) -> tuple[int, list[bytes]]:
    # The cluster client answers a SCAN sent to one node with its cursor keyed by that node's name.
    cursor, names = reply
    if isinstance(cursor, dict):
        cursor = next(iter(cursor.values()))
    return int(cursor), list(names)


def _decode(value: bytes | str) -> Record:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise StoreUnavailable("redis: a record is not JSON (written by something other than Bastion?)") from exc
    if not isinstance(record, dict):
        raise StoreUnavailable("redis: a record is not a JSON object (written by something other than Bastion?)")
    return record
