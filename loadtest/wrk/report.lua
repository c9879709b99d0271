-- wrk script: prints one machine-readable line after wrk's normal text report.
--   WRK_JSON {"requests":..,"duration_us":..,"bytes":..,"errors":{..},"latency":{"p50":..,..}}
-- Latencies are in microseconds, exact from wrk's histogram (the text report rounds them).
-- errors.status = responses with status > 399 ("Non-2xx or 3xx responses" in the text report).
-- Used by loadtest/harness.py (parse_wrk_output); close.lua includes this file.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency":{"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d,"mean":%.2f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
