-- wrk script for the http workload: POST /api/jobs with a bearer key and a JSON body;
-- counts responses per status in every thread and prints one JSON line at the end.
-- Environment: PGCUE_BENCH_TOKEN, PGCUE_BENCH_CHANNEL, PGCUE_BENCH_TYPE.

local token = os.getenv("PGCUE_BENCH_TOKEN")
local channel = os.getenv("PGCUE_BENCH_CHANNEL")
local jobtype = os.getenv("PGCUE_BENCH_TYPE") or "echo"

wrk.method = "POST"
wrk.path = "/api/jobs"
wrk.body = '{"type":"' .. jobtype .. '","channelId":"' .. channel .. '","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  local counts = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'PGCUE_WRK {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"mean_us":%.1f,"statuses":{%s},"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout))
end
