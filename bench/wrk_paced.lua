-- wrk on a fixed schedule, one connection per wrk thread (run with -t N -c N).
--
-- wrk alone is closed loop: each connection sends its next request as soon as the
-- last answer is in. wrk calls delay() before every request and waits that many
-- milliseconds, so here delay() returns the time left until the connection's next
-- slot on a fixed schedule: request k of connection i is due at
-- t0 + i * interval / N + k * interval. The connections are staggered by a
-- fraction of the interval so their requests do not arrive in bursts of N. A
-- connection that falls behind sends at once until it is back on schedule; no
-- slot is dropped. wrk measures each request's latency itself, in microseconds,
-- from the write of the request to the end of the response; done() prints wrk's
-- whole latency histogram so the caller can take any percentile of it.
--
-- Arguments after "--": the interval between one connection's requests in
-- microseconds, and the number of connections N.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pilotfish_timespec;
int clock_gettime(int clk_id, pilotfish_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("pilotfish_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1e6 + tonumber(now_ts.tv_nsec) / 1e3
end

local next_index = 0

function setup(thread)
  thread:set("connection_index", next_index)
  next_index = next_index + 1
end

function init(args)
  interval_us = tonumber(args[1])
  stagger_us = interval_us * connection_index / tonumber(args[2])
  due_us = nil
end

function delay()
  local now = now_us()
  if due_us == nil then
    due_us = now + stagger_us
  else
    due_us = due_us + interval_us
  end
  local wait_ms = (due_us - now) / 1000
  if wait_ms <= 0 then
    return 0
  end
  -- wrk's timers have millisecond resolution: round to the nearest.
  return math.floor(wait_ms + 0.5)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("pilotfish-requests %d %d\n", summary.requests, summary.duration))
  io.write(string.format("pilotfish-errors %d %d %d %d %d\n",
    e.connect, e.read, e.write, e.status, e.timeout))
  for i = 1, #latency do
    local us, count = latency(i)
    io.write(string.format("pilotfish-latency %d %d\n", us, count))
  end
end
