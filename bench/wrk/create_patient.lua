-- POST /fhir/Patient with an nl-core style Patient (~1 KB), a unique valid BSN per request.
-- Mirrors fhirdata.patient() in bench/fhirdata.py. First argument: the run number (1-9), which
-- with the thread number makes the BSNs of every wrk run against one store distinct.
local families = {
  {"", "Jansen"}, {"de", "Vries"}, {"van den", "Berg"}, {"van", "Dijk"}, {"", "Bakker"},
  {"", "Janssen"}, {"", "Visser"}, {"", "Smit"}, {"", "Meijer"}, {"de", "Boer"},
  {"", "Mulder"}, {"de", "Groot"}, {"", "Bos"}, {"", "Vos"}, {"", "Peters"},
  {"", "Hendriks"}, {"van", "Leeuwen"}, {"", "Dekker"}, {"", "Brouwer"}, {"de", "Wit"},
  {"", "Dijkstra"}, {"", "Smits"}, {"de", "Graaf"}, {"van der", "Meer"},
}
local givens = {
  {"Johanna", "female"}, {"Maria", "female"}, {"Anna", "female"}, {"Sophie", "female"},
  {"Emma", "female"}, {"Julia", "female"}, {"Cornelia", "female"}, {"Fleur", "female"},
  {"Jan", "male"}, {"Pieter", "male"}, {"Hendrik", "male"}, {"Willem", "male"},
  {"Daan", "male"}, {"Sem", "male"}, {"Lucas", "male"}, {"Gerrit", "male"},
}
local cities = {
  {"Amsterdam", "1012"}, {"Rotterdam", "3011"}, {"Utrecht", "3511"}, {"Den Haag", "2511"},
  {"Eindhoven", "5611"}, {"Groningen", "9711"}, {"Nijmegen", "6511"}, {"Zwolle", "8011"},
}
local streets = {"Dorpsstraat", "Kerkstraat", "Schoolstraat", "Molenweg", "Stationsweg", "Julianalaan"}
local letters = "ABCDEFGHJKLMNPRSTVWXZ"
local ext = "http://hl7.org/fhir/StructureDefinition/"
local headers = {["Content-Type"] = "application/fhir+json"}

local run = 1
local counter = 0

function init(args)
  run = tonumber(args[1] or "1")
  for name, value in pairs(wrk.headers) do  -- e.g. Authorization given with -H
    if headers[name] == nil then headers[name] = value end
  end
  math.randomseed(run * 1000 + (tid or 0))
end

-- 8 digits (run, thread, counter) plus the 11-proef check digit; skips numbers whose check is 10.
local function next_bsn()
  while true do
    counter = counter + 1
    local s = string.format("%d%d%06d", run, tid or 0, counter)
    local total = 0
    for i = 1, 8 do
      total = total + (string.byte(s, i) - 48) * (10 - i)
    end
    local check = total % 11
    if check ~= 10 then return s .. check end
  end
end

local function pick(t) return t[math.random(#t)] end

function request()
  local fam = pick(families)
  local giv = pick(givens)
  local city = pick(cities)
  local street = pick(streets)
  local house = tostring(math.random(1, 250))
  local prefix, own = fam[1], fam[2]
  local family = own
  local fam_ext = '{"url":"' .. ext .. 'humanname-own-name","valueString":"' .. own .. '"}'
  if prefix ~= "" then
    family = prefix .. " " .. own
    fam_ext = '{"url":"' .. ext .. 'humanname-own-prefix","valueString":"' .. prefix .. '"},' .. fam_ext
  end
  local l1, l2 = math.random(#letters), math.random(#letters)
  local body = '{"resourceType":"Patient",' ..
    '"meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient"]},' ..
    '"identifier":[{"use":"official","system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"' ..
    next_bsn() .. '"}],"active":true,' ..
    '"name":[{"use":"official","text":"' .. giv[1] .. ' ' .. family .. '","family":"' .. family ..
    '","_family":{"extension":[' .. fam_ext .. ']},"given":["' .. giv[1] .. '"]}],' ..
    '"telecom":[{"system":"phone","value":"+316' .. math.random(10000000, 99999999) ..
    '","use":"mobile"},{"system":"email","value":"' .. string.lower(giv[1]) .. '.' ..
    string.lower(own) .. math.random(1, 999) .. '@example.nl","use":"home"}],' ..
    '"gender":"' .. giv[2] .. '","birthDate":"' ..
    string.format("%d-%02d-%02d", math.random(1930, 2020), math.random(1, 12), math.random(1, 28)) ..
    '","address":[{"use":"home","type":"both","line":["' .. street .. ' ' .. house .. '"],' ..
    '"_line":[{"extension":[{"url":"' .. ext .. 'iso21090-ADXP-streetName","valueString":"' ..
    street .. '"},{"url":"' .. ext .. 'iso21090-ADXP-houseNumber","valueString":"' .. house ..
    '"}]}],"city":"' .. city[1] .. '","postalCode":"' .. city[2] .. ' ' ..
    string.sub(letters, l1, l1) .. string.sub(letters, l2, l2) .. '","country":"NL"}]}'
  return wrk.format("POST", "/fhir/Patient", headers, body)
end
