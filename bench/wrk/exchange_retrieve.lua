-- GET /fhir/Binary/{id} (ITI-68 Retrieve Document) with "Accept: application/pdf", of ids picked
-- at random from the file given as the first argument (bench/bench_exchange.py).
local ids = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  wrk.headers["Accept"] = "application/pdf"
  math.randomseed(os.time() * 10 + (tid or 0))
end

function request()
  return wrk.format("GET", "/fhir/Binary/" .. ids[math.random(#ids)])
end
