-- wrk script: every request carries "Connection: close", so the server closes the
-- connection after each response and wrk opens a new one (connection churn: accept,
-- per-connection state set-up and tear-down on every request). Used by soak.py.
-- Also prints the WRK_JSON summary line (see report.lua, loaded from this file's folder).

wrk.headers["Connection"] = "close"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
