-- Every request carries a distinct X-Api-Key ("t<thread>-<n>"), so that a rate limit keyed on
-- that header sees a new key per request. Each thread stops by itself once it has sent its share
-- (wrk -s distinct_keys.lua URL -- PER_THREAD); a few requests in flight at that moment may
-- add keys beyond it, so the caller counts keys from wrk's request total.
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
end

local prefix, sent, limit

function init(args)
   prefix = "t" .. id .. "-"
   sent = 0
   limit = tonumber(args[1]) or math.huge
end

function request()
   sent = sent + 1
   return wrk.format("GET", nil, { ["X-Api-Key"] = prefix .. sent })
end

function response(status, headers, body)
   if sent >= limit then
      wrk.thread:stop()
   end
end
