-- wrk script for `make loadtest` (natively) and the compose `wrk` service: a mix of the lab's two
-- routes, /api/test/echo (one backend) and /api/users/echo (round robin over three).
--
--   wrk -t2 -c32 -d30s --latency -s loadtest/wrk/loadtest.lua http://127.0.0.1:8080
--   wrk ... -s loadtest/wrk/loadtest.lua http://127.0.0.1:8080 -- test=1 users=3   (weights)
--
-- Weights are whole numbers (default 1:1); requests are pre-built and sent in a fixed,
-- interleaved order, so the per-request cost in Lua stays negligible. After wrk's report it
-- prints the status classes seen, then the WRK_JSON summary line of report.lua (same format as
-- the benchmark harness reads).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
local report_done = done

local ROUTES = {
   { name = "test",  path = "/api/test/echo" },
   { name = "users", path = "/api/users/echo" },
}

-- Per thread (each wrk thread has its own Lua state).
local schedule = {}
local position = 0
statuses = { ["2xx"] = 0, ["3xx"] = 0, ["4xx"] = 0, ["5xx"] = 0, other = 0 }

-- In the main state: the threads, to collect their counters in done().
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local function weights_from(args)
   local w = {}
   for _, route in ipairs(ROUTES) do w[route.name] = 1 end
   for _, arg in ipairs(args or {}) do
      local name, value = arg:match("^([%w_-]+)=(%d+)$")
      if name == nil or w[name] == nil then
         error("loadtest.lua: argument '" .. arg .. "' is not ROUTE=WEIGHT with ROUTE in test, users")
      end
      w[name] = tonumber(value)
   end
   return w
end

function init(args)
   local w = weights_from(args)
   -- Smooth interleaving: at each step take the route furthest behind its share.
   local total, sent = 0, {}
   for _, route in ipairs(ROUTES) do
      total = total + w[route.name]
      sent[route.name] = 0
   end
   if total == 0 then error("loadtest.lua: every weight is 0") end
   local built = {}
   for _, route in ipairs(ROUTES) do
      built[route.name] = wrk.format("GET", route.path)
   end
   for step = 1, total do
      local best, best_lag = nil, nil
      for _, route in ipairs(ROUTES) do
         local lag = step * w[route.name] / total - sent[route.name]
         if w[route.name] > 0 and (best_lag == nil or lag > best_lag) then
            best, best_lag = route.name, lag
         end
      end
      sent[best] = sent[best] + 1
      schedule[#schedule + 1] = built[best]
   end
end

function request()
   position = position % #schedule + 1
   return schedule[position]
end

function response(status, headers, body)
   local class = status >= 200 and status < 600 and (math.floor(status / 100) .. "xx") or "other"
   statuses[class] = statuses[class] + 1
end

function done(summary, latency, requests)
   local total = { ["2xx"] = 0, ["3xx"] = 0, ["4xx"] = 0, ["5xx"] = 0, other = 0 }
   for _, thread in ipairs(threads) do
      local counts = thread:get("statuses")
      for class, n in pairs(counts or {}) do
         total[class] = (total[class] or 0) + n
      end
   end
   io.write(string.format("status classes: 2xx=%d 3xx=%d 4xx=%d 5xx=%d other=%d\n",
      total["2xx"], total["3xx"], total["4xx"], total["5xx"], total.other))
   report_done(summary, latency, requests)
end
