-- GET /fhir/Patient/{id} of ids picked at random from the file given as the first argument.
local ids = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  math.randomseed(os.time() * 10 + (tid or 0))
end

function request()
  return wrk.format("GET", "/fhir/Patient/" .. ids[math.random(#ids)])
end
