-- wrk script for bench/run: every variant uses it, so that wrk does the same
-- work per response in every run.
--
--   wrk ... -s bench/check.lua URL -- STATUS [LOCATION_PREFIX]
--
-- Counts the responses whose status is STATUS (and, when LOCATION_PREFIX is
-- given, whose Location header starts with it) and those that are not; at
-- the end prints one machine-readable line and exits 1 if any response was
-- not what was expected, or if a socket error occurred.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  want = tonumber(args[1] or "200")
  want_loc = args[2]
  good = 0
  bad = 0
  first_bad = ""
end

function response(status, headers, body)
  local ok = status == want
  if ok and want_loc ~= nil then
    local loc = headers["Location"] or headers["location"]
    ok = loc ~= nil and string.sub(loc, 1, #want_loc) == want_loc
  end
  if ok then
    good = good + 1
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = tostring(status)
    end
  end
end

function done(summary, latency, requests)
  local g, b, fb = 0, 0, ""
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
    if fb == "" then fb = t:get("first_bad") end
  end
  local e = summary.errors
  local errs = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "BENCH requests=%d duration_us=%d good=%d bad=%d first_bad=%s sock_errors=%d status_errors=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d\n",
    summary.requests, summary.duration, g, b, (fb == "" and "-" or fb), errs, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
  if b > 0 or errs > 0 then
    io.write(string.format("BENCH FAIL: %d unexpected responses (first status %s), %d socket errors\n", b, fb, errs))
    os.exit(1)
  end
end
