-- wrk script: POST a JSON body with a bucket name no other request of the run uses.
-- Prints one JSON line of figures when the run ends (the runner parses it).
local counter = 0
local threads = {}
local prefix = os.getenv("BENCH_NAME_PREFIX") or "w"

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format('{"bucket_name":"%s-%d-%d"}', prefix, tid, counter)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_timeout":%d,"non_2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, non2xx, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
