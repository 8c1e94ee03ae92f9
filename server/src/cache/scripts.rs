//! The Lua scripts behind the cache: each cache operation is one EVALSHA, so every append
//! and every hot read costs exactly one Redis round trip, and each runs atomically.
//!
//! A session's cache is a hash `meta` and a list `tail` (the newest entries, oldest first),
//! in one hash slot. `meta` fields:
//! - `floor`, `fupd`: the newest `last_seq` and `updated_at` known to be committed. They only
//!   grow, and survive invalidation, so a repair from an older snapshot can never install
//!   stale data over a newer write.
//! - `last`: the `last_seq` the cached tail and session are valid for. Present only while
//!   valid, which requires `last == floor`.
//! - `session`, `sseq`, `summary`: the encoded session, its latest summary seq and entry.
//!
//! Micros are passed and stored as strings: Lua numbers are doubles and would print them in
//! exponent form.

/// Extends the tail with a committed append when it continues the cached state, otherwise
/// raises the floor and drops the tail (the next reader repairs it); then publishes.
/// KEYS: meta, tail. ARGV: first, last, upd, ttl, tail_len, session, sseq, summary,
/// channel, payload, entries….
pub const APPEND: &str = r#"
local m, t = KEYS[1], KEYS[2]
local first, last, upd = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ttl, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = redis.call('HMGET', m, 'last', 'floor', 'fupd')
-- A missing field is false, not nil: `or nil` makes an absent fupd nil (a forgotten session).
local clast, cfloor, cfupd = tonumber(cur[1]), tonumber(cur[2]), cur[3] or nil
local valid = clast ~= nil and clast == cfloor and clast == first - 1
if not valid and cfloor == nil and first == 1 then valid = true end
if valid then
  if first == 1 then redis.call('DEL', t) end
  redis.call('RPUSH', t, unpack(ARGV, 11))
  redis.call('LTRIM', t, -n, -1)
  if cfupd == nil or tonumber(upd) > tonumber(cfupd) then cfupd = upd end
  redis.call('HSET', m, 'last', ARGV[2], 'floor', ARGV[2], 'fupd', cfupd, 'session', ARGV[6])
  if ARGV[8] ~= '' then redis.call('HSET', m, 'sseq', ARGV[7], 'summary', ARGV[8]) end
else
  if cfloor == nil or last > cfloor then redis.call('HSET', m, 'floor', ARGV[2]) end
  if cfupd == nil or tonumber(upd) > tonumber(cfupd) then redis.call('HSET', m, 'fupd', upd) end
  redis.call('HDEL', m, 'last', 'session', 'sseq', 'summary')
  redis.call('DEL', t)
end
redis.call('EXPIRE', m, ttl)
redis.call('EXPIRE', t, ttl)
redis.call('PUBLISH', ARGV[9], ARGV[10])
if valid then return 1 else return 0 end
"#;

/// Installs a snapshot read from the store unless a newer write is already known.
/// KEYS: meta, tail. ARGV: last, upd, ttl, session, sseq, summary, entries….
pub const INSTALL: &str = r#"
local m, t = KEYS[1], KEYS[2]
local last, upd = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur = redis.call('HMGET', m, 'floor', 'fupd')
local cfloor, cfupd = tonumber(cur[1]), tonumber(cur[2])
if cfloor ~= nil and (last < cfloor or (last == cfloor and cfupd ~= nil and upd < cfupd)) then return 0 end
redis.call('DEL', t)
if #ARGV > 6 then redis.call('RPUSH', t, unpack(ARGV, 7)) end
redis.call('HSET', m, 'last', ARGV[1], 'floor', ARGV[1], 'fupd', ARGV[2], 'session', ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', m, 'sseq', ARGV[5], 'summary', ARGV[6])
else
  redis.call('HDEL', m, 'sseq', 'summary')
end
redis.call('EXPIRE', m, tonumber(ARGV[3]))
redis.call('EXPIRE', t, tonumber(ARGV[3]))
return 1
"#;

/// Marks a session's cache invalid after a change other than an append (status, owner,
/// metadata), remembering the change's version; optionally publishes.
/// KEYS: meta, tail. ARGV: last, upd, ttl, channel, payload.
pub const INVALIDATE: &str = r#"
local m, t = KEYS[1], KEYS[2]
local last, upd = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur = redis.call('HMGET', m, 'floor', 'fupd')
if cur[1] == false or last > tonumber(cur[1]) then redis.call('HSET', m, 'floor', ARGV[1]) end
if cur[2] == false or upd > tonumber(cur[2]) then redis.call('HSET', m, 'fupd', ARGV[2]) end
redis.call('HDEL', m, 'last', 'session', 'sseq', 'summary')
redis.call('DEL', t)
redis.call('EXPIRE', m, tonumber(ARGV[3]))
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"#;

/// Reads a session's cache. Returns {0} when invalid or absent; {1} when the caller's L1
/// copy (ARGV last, upd) is current; else {2, last, upd, session, sseq, summary, tail}.
/// KEYS: meta, tail. ARGV: l1_last, l1_upd, tail entries wanted.
pub const READ: &str = r#"
local m, t = KEYS[1], KEYS[2]
local cur = redis.call('HMGET', m, 'last', 'floor', 'fupd', 'session')
if not cur[1] or cur[1] ~= cur[2] or not cur[4] then return {0} end
if cur[1] == ARGV[1] and cur[3] == ARGV[2] then return {1} end
local s = redis.call('HMGET', m, 'sseq', 'summary')
local tail = redis.call('LRANGE', t, -tonumber(ARGV[3]), -1)
return {2, cur[1], cur[3], cur[4], s[1] or '0', s[2] or '', tail}
"#;

/// Caches a handoff unless the cached copy is further along the state machine; publishes
/// its events. KEYS: handoff. ARGV: rank, ttl, handoff, then channel/payload pairs.
pub const PUT_HANDOFF: &str = r#"
local h = KEYS[1]
local rank = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', h, 'rank'))
if cur == nil or rank >= cur then
  redis.call('HSET', h, 'rank', ARGV[1], 'handoff', ARGV[3])
  redis.call('EXPIRE', h, tonumber(ARGV[2]))
end
local i = 4
while i < #ARGV do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
"#;
