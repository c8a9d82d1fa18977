-- wrk script for bench/http.sh (GENERATOR=wrk): the same two loads as tests/examples/http_load.rs.
--
--   wrk -t2 -c32 -d10s -s bench/http_load.lua http://127.0.0.1:8080 -- start
--   wrk -t2 -c32 -d10s -s bench/http_load.lua http://127.0.0.1:8080 -- get /api/v1/instances/ID
--
-- `start` posts the order flow (`order_processing`, amount 20000: it runs to its review task)
-- with a fresh order id per request; `get` reads one instance over and over. When done, prints
-- one JSON line with the fields http_load prints (requests/s, p50, p99 and max in ms, errors:
-- failed connections, reads, writes, timeouts and answers other than 2xx/3xx).

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

mode, path = "start", nil -- globals: `done` reads `mode` through `thread:get`
local sent = 0

function init(args)
  mode = args[1] or "start"
  path = args[2]
  if mode == "get" then
    wrk.method = "GET"
    wrk.path = path
  elseif mode ~= "start" then
    error("mode must be start or get, not " .. mode)
  end
end

function request()
  if mode == "get" then
    return wrk.request()
  end
  sent = sent + 1
  local body = string.format(
    '{"process":"order_processing","variables":{"order_id":"SO-%d-%d","customer":"c%d","amount":20000}}',
    thread_id, sent, thread_id)
  return wrk.format("POST", "/api/v1/instances", { ["Content-Type"] = "application/json" }, body)
end

-- Runs in wrk's main Lua state, which sees the threads' globals only through `thread:get`.
function done(summary, latency, requests)
  local mode = threads[1]:get("mode")
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"generator":"wrk","mode":"%s","seconds":%.3f,"requests":%d,"errors":%d,' ..
    '"requests_per_second":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    mode, seconds, summary.requests,
    e.connect + e.read + e.write + e.timeout + e.status,
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
