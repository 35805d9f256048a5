package redis

import (
	"context"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Every script touches exactly one key (KEYS[1]), so each is atomic on one
// server and correct on Redis Cluster without hash tags: a script's keys
// always share a slot.
//
// Times are passed as 8 big-endian bytes and compared byte by byte (Lua
// numbers are doubles and cannot hold unix nanoseconds exactly; Lua string
// comparison follows the server's locale).

// luaExpired is the prelude of the scripts that look at a record's expiry.
const luaExpired = `
local NEVER = '\0\0\0\0\0\0\0\0'
-- expired reports whether record rec (8-byte expiry first) is expired at
-- now (8 bytes): its expiry is set and not after now.
local function expired(rec, now)
  local e = string.sub(rec, 1, 8)
  if e == NEVER then return false end
  for i = 1, 8 do
    local a, b = string.byte(e, i), string.byte(now, i)
    if a ~= b then return b > a end
  end
  return true
end
`

// scriptPutIfAbsent stores ARGV[2] (a whole record) under KEYS[1] unless an
// unexpired record is there at now ARGV[1]; ARGV[3] is the PXAT expiry, or
// "" for none. It returns {1} if it stored the record, else {0, record}.
var scriptPutIfAbsent = goredis.NewScript(luaExpired + `
local v = redis.call('GET', KEYS[1])
if v then
  if #v < 8 then return redis.error_reply('ERR twostep: corrupt record') end
  if not expired(v, ARGV[1]) then return {0, v} end
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
end
return {1}
`)

// scriptReplace stores ARGV[2] under KEYS[1] (PXAT ARGV[3], or none when
// empty) only if a value unexpired at now ARGV[1] is there. It returns 1 if
// it stored, 0 if not.
var scriptReplace = goredis.NewScript(luaExpired + `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if #v < 8 then return redis.error_reply('ERR twostep: corrupt record') end
if expired(v, ARGV[1]) then return 0 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
end
return 1
`)

// scriptIncr adds one to the counter under KEYS[1] at now ARGV[1]. A missing
// or expired counter starts again at 1 with expiry ARGV[2] (8 bytes) and
// PXAT ARGV[3]; a live one keeps its expiry. It returns the new 16-byte
// record (expiry, count).
var scriptIncr = goredis.NewScript(luaExpired + `
local v = redis.call('GET', KEYS[1])
if v then
  if #v < 8 then return redis.error_reply('ERR twostep: corrupt record') end
  if not expired(v, ARGV[1]) then
    if #v ~= 16 or string.sub(v, 1, 8) == NEVER then
      return redis.error_reply('ERR twostep: key holds a value that is not a counter')
    end
    local b = {string.byte(v, 9, 16)}
    local i = 8
    while i >= 1 do
      if b[i] < 255 then
        b[i] = b[i] + 1
        break
      end
      b[i] = 0
      i = i - 1
    end
    local nv = string.sub(v, 1, 8) .. string.char(unpack(b))
    redis.call('SET', KEYS[1], nv, 'KEEPTTL')
    return nv
  end
end
local nv = ARGV[2] .. '\0\0\0\0\0\0\0\1'
redis.call('SET', KEYS[1], nv, 'PXAT', ARGV[3])
return nv
`)

// scriptSweep deletes the record under KEYS[1] if it is expired at now
// ARGV[1]; it returns 1 if it did. Keys that are not strings of our format
// are left alone.
var scriptSweep = goredis.NewScript(luaExpired + `
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' or #v < 8 then return 0 end
if not expired(v, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// scriptDeleteIfUser deletes the session record under KEYS[1] if it belongs
// to the user whose userTag is ARGV[1], or cannot be read (the index it was
// found through says it is that user's). It returns 1 if it deleted it.
var scriptDeleteIfUser = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if #v >= 11 and string.byte(v, 9) == string.byte(ARGV[1], 1) and string.sub(v, 9, 8 + #ARGV[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
`)

// scriptSwap replaces the record under KEYS[1] with ARGV[2], expiring at
// PXAT ARGV[3], if it is still exactly ARGV[1]; it returns 1 if it did.
var scriptSwap = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
`)

// scriptDeleteIf deletes the record under KEYS[1] if it is still exactly
// ARGV[1]; it returns 1 if it did.
var scriptDeleteIf = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// scriptIndexAdd adds session ARGV[1] to the per-user index KEYS[1] (a
// sorted set scored by the unix milliseconds after which the session can no
// longer exist, ARGV[2]), never lowering a score. It first drops the entries
// whose score has passed by the server's clock (their records are gone:
// Redis expired them), and sets the index to expire with its last entry.
var scriptIndexAdd = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now))
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
`)

// isNoScript reports whether err says the server does not have the script.
func isNoScript(err error) bool {
	return err != nil && (goredis.HasErrorPrefix(err, "NOSCRIPT") || strings.HasPrefix(err.Error(), "NOSCRIPT"))
}

// runEach runs script once for each key (KEYS[1] = key, the same args) in
// one pipeline on c and returns the integer results. A call that fails
// because the server does not know the script yet is run again with Run,
// which loads it.
func runEach(ctx context.Context, c goredis.Cmdable, script *goredis.Script, keys []string, args ...any) ([]int64, error) {
	pipe := c.Pipeline()
	cmds := make([]*goredis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = script.EvalSha(ctx, pipe, []string{k}, args...)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below
	out := make([]int64, len(keys))
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			cmd = script.Run(ctx, c, []string{keys[i]}, args...)
		}
		n, err := cmd.Int64()
		if err != nil {
			return out, err
		}
		out[i] = n
	}
	return out, nil
}
