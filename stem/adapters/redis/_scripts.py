"""The Lua scripts of the Redis backend.

Every broker script takes the same 17 keys of one queue (see ``_keys.QueueKeys``)
so that helpers can be shared; all keys of a queue share one hash tag, hence one
Redis Cluster slot. Times (``now``, deadlines) always come from the client as
ARGV: no script reads the server's clock, so Trio's ``MockClock`` drives leases
and delays. Scores are formatted with ``%.6f`` before they are returned, since
Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

import hashlib

import attrs

#: Helpers shared by the broker scripts. KEYS layout:
#: 1..10 streams s0..s9 (priority buckets), 11 delayed zset, 12 delayed bodies
#: hash, 13 sequence counter, 14 lease zset (member "bucket|id", score deadline),
#: 15 dead zset (member task id, score sequence), 16 dead hash, 17 dead sequence.
_BROKER_PRELUDE = r"""
local G = 'stem'
local function ensure(s)
  if redis.call('EXISTS', s) == 0 then
    redis.call('XGROUP', 'CREATE', s, G, '0', 'MKSTREAM')
  end
end
local function xadd(prio, body, n)
  local s = KEYS[tonumber(prio) + 1]
  ensure(s)
  redis.call('XADD', s, '*', 'b', body, 'n', n)
end
local function delay(at, prio, body, n)
  local seq = redis.call('INCR', KEYS[13])
  local m = string.format('%014d|%d|%d', seq, tonumber(prio), tonumber(n))
  redis.call('ZADD', KEYS[11], at, m)
  redis.call('HSET', KEYS[12], m, body)
end
local function promote(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    local _, _, prio, n = string.find(m, '^%d+|(%d)|(%d+)$')
    -- A member written by someone else: its body still goes to the queue
    -- (at priority 0), where the worker decodes or dead-letters it.
    if prio == nil then prio, n = '0', '0' end
    local body = redis.call('HGET', KEYS[12], m)
    if body then xadd(prio, body, n) end
    redis.call('ZREM', KEYS[11], m)
    redis.call('HDEL', KEYS[12], m)
  end
end
-- XREADGROUP that survives a stream written without the consumer group
-- (the group is created at its start: those entries are delivered too) and
-- skips a key of the wrong type. Returns the entries read.
local function readgroup(s, consumer, count)
  local r = redis.pcall('XREADGROUP', 'GROUP', G, consumer, 'COUNT', count,
                        'STREAMS', s, '>')
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) == nil then return {} end
    local made = redis.pcall('XGROUP', 'CREATE', s, G, '0')
    if type(made) == 'table' and made.err
       and string.find(made.err, 'BUSYGROUP', 1, true) == nil then
      return {}
    end
    r = redis.pcall('XREADGROUP', 'GROUP', G, consumer, 'COUNT', count,
                    'STREAMS', s, '>')
    if type(r) == 'table' and r.err then return {} end
  end
  if not r then return {} end
  return r[1][2]
end
local function owned(s, id, consumer, count)
  local p = redis.call('XPENDING', s, G, id, id, 1)
  local e = p[1]
  return e ~= nil and e[2] == consumer and tonumber(e[4]) == tonumber(count)
end
local function fields(f)
  local body, n = false, '0'
  for j = 1, #f, 2 do
    if f[j] == 'b' then body = f[j + 1] elseif f[j] == 'n' then n = f[j + 1] end
  end
  return body, n
end
local function settle(b, id)
  local s = KEYS[tonumber(b) + 1]
  redis.call('XACK', s, G, id)
  redis.call('XDEL', s, id)
  redis.call('ZREM', KEYS[14], b .. '|' .. id)
end
local function next_due()
  local best = nil
  for _, k in ipairs({KEYS[11], KEYS[14]}) do
    local r = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
    if r[2] then
      local v = tonumber(r[2])
      if best == nil or v < best then best = v end
    end
  end
  if best == nil then return '' end
  return string.format('%.6f', best)
end
-- The task id at the canonical start of a body, else nil.
local function body_id(body)
  if type(body) ~= 'string' then return nil end
  return string.match(body, '^{"v":%d+,"id":"([%w%-_.:]+)",')
end
local function netstring(x)
  if not x then x = '' end
  return #x .. ':' .. x
end
-- Hand new entries to the idle claims registered in hash ``idle`` (consumer
-- -> "capacity|lease|registered until|channel"): each is read into the
-- consumer's PEL with its lease, as a claim would, and PUBLISHed to the
-- consumer's channel as netstrings (queue, lease deadline, then per entry
-- bucket, id, n, count, body, task id, revocation record). A registration
-- that has lapsed, or whose channel nobody hears, is dropped first: then
-- nothing is leased to a claim that cannot hear it. Returns whether the
-- streams were emptied (no wake is needed then).
local function handoff(now, queue, idle, revs)
  local regs = redis.call('HGETALL', idle)
  for i = 1, #regs, 2 do
    local consumer, spec = regs[i], regs[i + 1]
    local _, _, cap, lease, upto, chan =
      string.find(spec, '^(%d+)|([^|]+)|([^|]+)|(.+)$')
    cap, lease, upto = tonumber(cap), tonumber(lease), tonumber(upto)
    if cap == nil or lease == nil or upto == nil or cap < 1 or upto < now
       or redis.call('PUBSUB', 'NUMSUB', chan)[2] == 0 then
      redis.call('HDEL', idle, consumer)
    else
      local untl = string.format('%.6f', now + lease)
      local parts = {netstring(queue), netstring(untl)}
      local got = 0
      for b = 9, 0, -1 do
        if got >= cap then break end
        local s = KEYS[b + 1]
        if redis.call('EXISTS', s) == 1 then
          for _, e in ipairs(readgroup(s, consumer, cap - got)) do
            redis.call('ZADD', KEYS[14], untl, b .. '|' .. e[1])
            local body, n = fields(e[2])
            local tid = body_id(body)
            local rev = tid and redis.call('HGET', revs, tid)
            for _, x in ipairs({tostring(b), e[1], n, '1', body, tid, rev}) do
              parts[#parts + 1] = netstring(x)
            end
            got = got + 1
          end
        end
      end
      if got == 0 then return true end
      if got >= cap then redis.call('HDEL', idle, consumer)
      else
        redis.call('HSET', idle, consumer,
                   (cap - got) .. '|' .. spec:match('^%d+|(.*)$'))
      end
      redis.call('PUBLISH', chan, table.concat(parts))
      if got < cap then return true end
    end
  end
  return false
end
"""

# ARGV: now, wake channel, queue, then (priority, ready_at, body) per message.
# KEYS 18 and 19, when given: the queue's idle claims and the revocations
# hash (see ``handoff``). The wake is published unless the handoff emptied the
# streams and nothing was delayed.
PUBLISH = r"""
local now = tonumber(ARGV[1])
promote(ARGV[1])
local later = false
for i = 4, #ARGV, 3 do
  local at = tonumber(ARGV[i + 1])
  if at > now then
    delay(at, ARGV[i], ARGV[i + 2], 0)
    later = true
  else xadd(ARGV[i], ARGV[i + 2], 0) end
end
local emptied = false
if #KEYS >= 19 then emptied = handoff(now, ARGV[3], KEYS[18], KEYS[19]) end
if later or not emptied then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
"""

# ARGV: now, limit, lease deadline, consumer[, '1' when KEYS[18] is the
# revocations hash]. Returns {next due time or '', {bucket, id, n, count,
# body, ...}}; with the revocations hash each row also carries the task id
# read from the body's canonical start ('{"v":N,"id":"...",', else false) and
# that id's revocation record (else false): the worker then needs no lookup.
# ARGV[6], when given (KEYS[19]: the queue's idle claims): a claim that got
# nothing and will wait registers "limit|ARGV[6]" there for a handoff
# (ARGV[6] '' or messages found: the consumer's registration is dropped).
CLAIM = r"""
local now = ARGV[1]
local limit = tonumber(ARGV[2])
local untl = ARGV[3]
local consumer = ARGV[4]
local revocations = ARGV[5] == '1' and KEYS[18] or nil
local register = ARGV[6]
promote(now)
local out = {}
local got = 0
local function checked(body)
  if not revocations then return end
  local tid = body_id(body)
  if tid then
    out[#out + 1] = tid
    out[#out + 1] = redis.call('HGET', revocations, tid)
  else
    out[#out + 1] = false
    out[#out + 1] = false
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[14], '-inf', now, 'LIMIT', 0, limit)
for _, m in ipairs(expired) do
  local _, _, b, id = string.find(m, '^(%d)|(.+)$')
  local r = {}
  local s = nil
  if b then
    s = KEYS[tonumber(b) + 1]
    r = redis.pcall('XCLAIM', s, G, consumer, 0, id)
    if type(r) == 'table' and r.err then r = {} end
  end
  local e = r[1]
  if b == nil or s == nil then
    redis.call('ZREM', KEYS[14], m)  -- not a lease this backend wrote
  elseif e and e[2] then
    local p = redis.call('XPENDING', s, G, id, id, 1)
    redis.call('ZADD', KEYS[14], untl, m)
    local body, n = fields(e[2])
    out[#out + 1] = b
    out[#out + 1] = id
    out[#out + 1] = n
    out[#out + 1] = tostring(p[1][4])
    out[#out + 1] = body
    checked(body)
    got = got + 1
  else
    redis.call('ZREM', KEYS[14], m)
    redis.pcall('XACK', s, G, id)
  end
end
for b = 9, 0, -1 do
  if got >= limit then break end
  local s = KEYS[b + 1]
  if redis.call('EXISTS', s) == 1 then
    do
      for _, e in ipairs(readgroup(s, consumer, limit - got)) do
        redis.call('ZADD', KEYS[14], untl, b .. '|' .. e[1])
        local body, n = fields(e[2])
        out[#out + 1] = tostring(b)
        out[#out + 1] = e[1]
        out[#out + 1] = n
        out[#out + 1] = '1'
        out[#out + 1] = body
        checked(body)
        got = got + 1
      end
    end
  end
end
if register then
  -- KEYS[19]: the idle claims. A claim about to wait registers (ARGV[6]:
  -- "lease|registered until|channel") for a handoff of up to ``limit``.
  if got == 0 and register ~= '' then
    redis.call('HSET', KEYS[19], consumer, limit .. '|' .. register)
  else
    redis.call('HDEL', KEYS[19], consumer)
  end
end
return {next_due(), out}
"""

# ARGV: receipts ("bucket|id|consumer|count"). Returns how many were acked.
ACK = r"""
local done = 0
for i = 1, #ARGV do
  local _, _, b, id, consumer, count = string.find(ARGV[i], '^(%d)|([^|]+)|(.*)|(%d+)$')
  if b and owned(KEYS[tonumber(b) + 1], id, consumer, count) then
    settle(b, id)
    done = done + 1
  end
end
return done
"""

# ARGV: lease deadline, then receipts. Returns 0/1 flags.
EXTEND = r"""
local untl = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local _, _, b, id, consumer, count = string.find(ARGV[i], '^(%d)|([^|]+)|(.*)|(%d+)$')
  local held = false
  if b then
    local s = KEYS[tonumber(b) + 1]
    local m = b .. '|' .. id
    if owned(s, id, consumer, count) and redis.call('ZSCORE', KEYS[14], m) then
      redis.call('XCLAIM', s, G, consumer, 0, id, 'JUSTID')
      redis.call('ZADD', KEYS[14], untl, m)
      held = true
    end
  end
  out[#out + 1] = held and 1 or 0
end
return out
"""

# ARGV: now, wake channel, queue, bucket, id, consumer, count, requeue (0/1),
# ready_at, priority, body ('' keeps the old body).
NACK = r"""
local now = tonumber(ARGV[1])
local b, id = ARGV[4], ARGV[5]
local s = KEYS[tonumber(b) + 1]
if not owned(s, id, ARGV[6], ARGV[7]) then return 0 end
local old, n = false, '0'
local r = redis.call('XRANGE', s, id, id)
if r[1] then old, n = fields(r[1][2]) end
settle(b, id)
if ARGV[8] == '1' then
  local body = ARGV[11]
  if body == '' then body = old end
  if body then
    local n2 = (tonumber(n) or 0) + tonumber(ARGV[7])
    local at = tonumber(ARGV[9])
    if at > now then delay(at, ARGV[10], body, n2) else xadd(ARGV[10], body, n2) end
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
end
return 1
"""

# ARGV: bucket, id, consumer, count, task id, entry (JSON). KEYS 15..17 belong
# to the dead-letter queue of the entry, which is keyed by its own entry id
# '#<seq>' (entries written before 0.x are keyed by their task id and stay
# readable: the key is only ever an opaque member). Returns the entry id.
DEAD = r"""
local b, id = ARGV[1], ARGV[2]
if not owned(KEYS[tonumber(b) + 1], id, ARGV[3], ARGV[4]) then return false end
settle(b, id)
local seq = redis.call('INCR', KEYS[17])
local entry = '#' .. seq
redis.call('ZADD', KEYS[15], seq, entry)
redis.call('HSET', KEYS[16], entry, ARGV[6])
return entry
"""

# The record half of DEAD, for a dead-letter queue in another cluster slot
# than the message's (no script may span two slots). ARGV: entry (JSON).
# Returns the entry id.
DEAD_ADD = r"""
local seq = redis.call('INCR', KEYS[17])
local entry = '#' .. seq
redis.call('ZADD', KEYS[15], seq, entry)
redis.call('HSET', KEYS[16], entry, ARGV[1])
return entry
"""

# ARGV: start, stop (ZRANGE indexes). Returns {ids, entries}.
LIST_DEAD = r"""
local ids = redis.call('ZRANGE', KEYS[15], ARGV[1], ARGV[2])
local vals = {}
for i = 1, #ids, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
  local got = redis.call('HMGET', KEYS[16], unpack(chunk))
  for _, v in ipairs(got) do vals[#vals + 1] = v end
end
return {ids, vals}
"""

# KEYS 1..14 of the target queue, 15..16 of the dead-letter queue.
# ARGV: now, wake channel, queue, then (entry id, priority, ready_at, body).
REPLAY = r"""
local now = tonumber(ARGV[1])
promote(ARGV[1])
local done = 0
for i = 4, #ARGV, 4 do
  if redis.call('HDEL', KEYS[16], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[15], ARGV[i])
    local at = tonumber(ARGV[i + 2])
    if at > now then delay(at, ARGV[i + 1], ARGV[i + 3], 0)
    else xadd(ARGV[i + 1], ARGV[i + 3], 0) end
    done = done + 1
  end
end
if done > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return done
"""

# ARGV: entry ids. Returns how many were deleted.
PURGE_DEAD = r"""
local done = 0
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[16], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[15], ARGV[i])
    done = done + 1
  end
end
return done
"""

# ARGV: now. Returns {pending, delayed, in_flight, dead}.
STATS = r"""
promote(ARGV[1])
local total = 0
for b = 1, 10 do total = total + redis.call('XLEN', KEYS[b]) end
local live = redis.call('ZCOUNT', KEYS[14], '(' .. ARGV[1], '+inf')
local delayed = redis.call('ZCARD', KEYS[11])
return {total - live, delayed, live, redis.call('ZCARD', KEYS[15])}
"""

# Deletes entries never delivered (after the group's last-delivered-id) and
# every delayed message; leased entries stay. Returns how many were deleted.
PURGE = r"""
local done = 0
for b = 1, 10 do
  local s = KEYS[b]
  if redis.call('EXISTS', s) == 1 then
    local last = '0-0'
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local name, lid = nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1]
        elseif g[j] == 'last-delivered-id' then lid = g[j + 1] end
      end
      if name == G and lid then last = lid end
    end
    local entries = redis.call('XRANGE', s, '(' .. last, '+')
    for _, e in ipairs(entries) do
      redis.call('XDEL', s, e[1])
      done = done + 1
    end
  end
end
done = done + redis.call('ZCARD', KEYS[11])
redis.call('DEL', KEYS[11], KEYS[12])
return done
"""

# ARGV: task ids. Deletes the waiting messages of those tasks: stream entries
# not yet delivered to the group (after its last-delivered id) and delayed
# ones; delivered (leased) entries are kept. Reads each waiting body: a
# revoke is rare, a scan of one queue is its cost. Returns how many.
REMOVE = r"""
local want = {}
for _, id in ipairs(ARGV) do want[id] = true end
local function wanted(body)
  local ok, env = pcall(cjson.decode, body)
  return ok and type(env) == 'table' and want[env['id']] == true
end
local done = 0
for b = 1, 10 do
  local s = KEYS[b]
  if redis.call('EXISTS', s) == 1 then
    local last = '0-0'
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local name, lid = nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1]
        elseif g[j] == 'last-delivered-id' then lid = g[j + 1] end
      end
      if name == G and lid then last = lid end
    end
    for _, e in ipairs(redis.call('XRANGE', s, '(' .. last, '+')) do
      local body = fields(e[2])
      if body and wanted(body) then
        redis.call('XDEL', s, e[1])
        done = done + 1
      end
    end
  end
end
for _, m in ipairs(redis.call('ZRANGE', KEYS[11], 0, -1)) do
  local body = redis.call('HGET', KEYS[12], m)
  if body and wanted(body) then
    redis.call('ZREM', KEYS[11], m)
    redis.call('HDEL', KEYS[12], m)
    done = done + 1
  end
end
return done
"""

# A key holding "expires|owner" (expires '' = never), expiry judged by the
# client's ``now``; PX only frees memory. KEYS[1]; ARGV: op, owner, now,
# expires, px ('0' = none). Returns {1 if changed, current holder or false}.
LEASE = r"""
local op, owner, now, exp, px = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local holder = nil
local v = redis.call('GET', KEYS[1])
if v then
  local _, _, e, o = string.find(v, '^([^|]*)|(.*)$')
  if e == '' or tonumber(e) > now then holder = o end
end
local function put()
  if px ~= '0' then redis.call('SET', KEYS[1], exp .. '|' .. owner, 'PX', px)
  else redis.call('SET', KEYS[1], exp .. '|' .. owner) end
end
if op == 'once' then
  if holder == nil then put() return {1, owner} end
elseif op == 'lock' then
  if holder == nil or holder == owner then put() return {1, owner} end
elseif op == 'renew' then
  if holder == owner then put() return {1, owner} end
elseif op == 'release' then
  if holder == owner then redis.call('DEL', KEYS[1]) return {1, owner} end
end
return {0, holder or false}
"""

# KEYS[1] result key; ARGV: now, terminal (0/1), expires ('' = never), px,
# body, done channel. A terminal record (unexpired) is final.
SET_STATE = r"""
local v = redis.call('GET', KEYS[1])
if type(v) == 'string' and string.sub(v, 1, 1) == 'T' then
  local nl = string.find(v, '\n', 1, true)
  local e = nl and string.sub(v, 2, nl - 1) or ''
  if e == '' or (tonumber(e) or 0) > tonumber(ARGV[1]) then return 0 end
end
local val = (ARGV[2] == '1' and 'T' or 'N') .. ARGV[3] .. '\n' .. ARGV[5]
if ARGV[4] ~= '0' then redis.call('SET', KEYS[1], val, 'PX', ARGV[4])
else redis.call('SET', KEYS[1], val) end
if ARGV[2] == '1' then redis.call('PUBLISH', ARGV[6], '1') end
return 1
"""

# Many records in one call. KEYS: result keys. ARGV[1] now, ARGV[2] expires
# (or ''), ARGV[3] px; then per key i: terminal flag, body, done channel.
# Same rules as SET_STATE per record; returns one 0/1 flag per key.
SET_STATE_MANY = r"""
local out = {}
for i, key in ipairs(KEYS) do
  local base = 3 + (i - 1) * 3
  local terminal, body = ARGV[base + 1], ARGV[base + 2]
  local ok = 1
  local v = redis.pcall('GET', key)
  if type(v) == 'string' and string.sub(v, 1, 1) == 'T' then
    local nl = string.find(v, '\n', 1, true)
    local e = nl and string.sub(v, 2, nl - 1) or ''
    if e == '' or (tonumber(e) or 0) > tonumber(ARGV[1]) then ok = 0 end
  end
  if ok == 1 then
    local val = (terminal == '1' and 'T' or 'N') .. ARGV[2] .. '\n' .. body
    if ARGV[3] ~= '0' then redis.call('SET', key, val, 'PX', ARGV[3])
    else redis.call('SET', key, val) end
    if terminal == '1' then redis.call('PUBLISH', ARGV[base + 3], '1') end
  end
  out[i] = ok
end
return out
"""

# A result key holds '<T|N><expires>\n<json>'; live = no expiry or expiry > now.
_LIVE = r"""
local function live(key, now)
  local v = redis.call('GET', key)
  if not v then return false end
  local nl = string.find(v, '\n', 1, true)
  if not nl then return true end
  local e = string.sub(v, 2, nl - 1)
  return e == '' or tonumber(e) == nil or tonumber(e) > now
end
"""

# KEYS: result keys; ARGV: now, expires ('' = never), px ('0' = none), then
# (terminal '1'|'0', body) per key. Stores a record only where no live one
# is; returns one flag per key (a key repeated is created once).
CREATE_MANY = (
    _LIVE
    + r"""
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local base = 2 + i * 2
  if live(key, now) then out[i] = 0
  else
    local val = (ARGV[base] == '1' and 'T' or 'N') .. ARGV[2] .. '\n' .. ARGV[base + 1]
    if ARGV[3] ~= '0' then redis.call('SET', key, val, 'PX', ARGV[3])
    else redis.call('SET', key, val) end
    out[i] = 1
  end
end
return out
"""
)

# KEYS: the queue's 17 keys, then one result key per message. ARGV: now, wake
# channel, queue, expires ('' = never), px ('0' = none), then (priority,
# ready_at, body, record) per message. Each message is published only if
# its QUEUED record was created (its task had no live record): enqueue by
# id, atomically. Two more KEYS after the result keys, when given: the
# queue's idle claims and the revocations hash (as PUBLISH's 18 and 19).
# Returns one flag per message.
CREATE_PUBLISH = (
    _LIVE
    + r"""
local now = tonumber(ARGV[1])
promote(ARGV[1])
local out = {}
local any, later = false, false
local last = 17 + (#ARGV - 5) / 4
for i = 18, last do
  local base = 6 + (i - 18) * 4
  local key = KEYS[i]
  if live(key, now) then out[#out + 1] = 0
  else
    local val = 'N' .. ARGV[4] .. '\n' .. ARGV[base + 3]
    if ARGV[5] ~= '0' then redis.call('SET', key, val, 'PX', ARGV[5])
    else redis.call('SET', key, val) end
    local at = tonumber(ARGV[base + 1])
    if at > now then
      delay(at, ARGV[base], ARGV[base + 2], 0)
      later = true
    else xadd(ARGV[base], ARGV[base + 2], 0) end
    out[#out + 1] = 1
    any = true
  end
end
local emptied = false
if any and #KEYS >= last + 2 then
  emptied = handoff(now, ARGV[3], KEYS[last + 1], KEYS[last + 2])
end
if any and (later or not emptied) then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return out
"""
)

# KEYS[1] group hash: member index -> result JSON, plus '~e' (expires at) and
# '~f' (forget at) in client time (stem/_groupstate.py; '' for never).
# ARGV: index, body, now, expires at, forget at, backstop px ('0': none).
# Returns {count, ''}, or {-1, expires at} when the group has expired. A time
# that does not parse counts as none (the group never expires by it).
GROUP_ADD = r"""
local now = tonumber(ARGV[3])
local e = redis.call('HGET', KEYS[1], '~e')
local f = tonumber(redis.call('HGET', KEYS[1], '~f') or '')
if f and f <= now then
  redis.call('DEL', KEYS[1])
elseif tonumber(e or '') and tonumber(e) <= now then
  return {-1, e}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], '~e', ARGV[4], '~f', ARGV[5])
if ARGV[6] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[6])
else redis.call('PERSIST', KEYS[1]) end
return {redis.call('HLEN', KEYS[1]) - 2, ''}
"""

# KEYS: hash, zset, version counter; ARGV: task id, JSON. Returns the version.
REVOKE = r"""
local v = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], v .. '\n' .. ARGV[2])
redis.call('ZADD', KEYS[2], v, ARGV[1])
return v
"""

# KEYS: hash, zset, version counter; ARGV: version. Returns {latest, records}.
CHANGES = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local vals = {}
for i = 1, #ids, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
  local got = redis.call('HMGET', KEYS[1], unpack(chunk))
  for _, v in ipairs(got) do vals[#vals + 1] = v end
end
return {redis.call('GET', KEYS[3]) or '0', vals}
"""

# KEYS: hash, zset; ARGV: worker id, JSON, deadline, now.
BEAT = r"""
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 100)
for _, w in ipairs(old) do
  if w ~= ARGV[1] then
    redis.call('HDEL', KEYS[1], w)
    redis.call('ZREM', KEYS[2], w)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: hash, zset; ARGV: now. Returns the live workers' JSON.
WORKERS = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
"""

# KEYS[1] bucket hash; ARGV: now, rate, burst. Returns seconds to wait ('0').
TAKE = r"""
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(h[1]), tonumber(h[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens >= 1 - 1e-9 then tokens = math.max(tokens - 1, 0)
else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens),
           'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""


@attrs.frozen
class Script:
    """A Lua script with its SHA1 (for EVALSHA)."""

    name: str
    source: str
    sha: str


def _script(name: str, body: str, *, broker: bool = False) -> Script:
    source = (_BROKER_PRELUDE + body) if broker else body
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


SCRIPTS: dict[str, Script] = {
    s.name: s
    for s in [
        _script("publish", PUBLISH, broker=True),
        _script("claim", CLAIM, broker=True),
        _script("ack", ACK, broker=True),
        _script("extend", EXTEND, broker=True),
        _script("nack", NACK, broker=True),
        _script("dead", DEAD, broker=True),
        _script("dead_add", DEAD_ADD, broker=True),
        _script("list_dead", LIST_DEAD, broker=True),
        _script("replay", REPLAY, broker=True),
        _script("purge_dead", PURGE_DEAD, broker=True),
        _script("stats", STATS, broker=True),
        _script("purge", PURGE, broker=True),
        _script("remove", REMOVE, broker=True),
        _script("lease", LEASE),
        _script("set_state", SET_STATE),
        _script("set_state_many", SET_STATE_MANY),
        _script("create_many", CREATE_MANY),
        _script("create_publish", CREATE_PUBLISH, broker=True),
        _script("group_add", GROUP_ADD),
        _script("revoke", REVOKE),
        _script("changes", CHANGES),
        _script("beat", BEAT),
        _script("workers", WORKERS),
        _script("take", TAKE),
    ]
}
