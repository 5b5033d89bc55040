-- wrk script: POST /sr as 50 Service Users in turn; print a JSON summary at the end.
local users = {}
for k = 0, 49 do
  users[#users + 1] = string.format("90-B3-D5-1F-30-01-%02X-%02X", math.floor(k / 256), k % 256)
end
local i = 0

request = function()
  i = i + 1
  local headers = {}
  headers["X-Service-User-ID"] = users[(i % #users) + 1]
  headers["X-DUIS-Version"] = "4.1"
  headers["Content-Type"] = "application/xml"
  return wrk.format("POST", "/sr", headers, "<Request/>")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
