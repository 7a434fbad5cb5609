-- POST /fhir with an ITI-65 Provide Document Bundle (bench/bench_exchange.py), a new
-- SubmissionSet identifier and masterIdentifier per request. The bundle (with its base64 PDF)
-- is built before timing and read from the file given as the first argument: every "@@N@@" in
-- it becomes 8 hex digits made of the run number (second argument), the wrk thread and a
-- counter, so the submissions of every wrk run against one store are distinct.
local parts = {}
local headers = {["Content-Type"] = "application/fhir+json"}
local run = 1
local counter = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local template = file:read("*a")
  file:close()
  local start = 1
  while true do
    local at = string.find(template, "@@N@@", start, true)
    if not at then break end
    parts[#parts + 1] = string.sub(template, start, at - 1)
    start = at + 5
  end
  parts[#parts + 1] = string.sub(template, start)
  run = tonumber(args[2] or "1")
  for name, value in pairs(wrk.headers) do  -- e.g. Authorization given with -H
    if headers[name] == nil then headers[name] = value end
  end
end

function request()
  counter = counter + 1
  local uid = string.format("%08x", run * 16777216 + (tid or 0) * 1048576 + counter)
  return wrk.format("POST", "/fhir", headers, table.concat(parts, uid))
end
